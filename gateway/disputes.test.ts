import { describe, expect, it } from 'vitest';
import type { Agent } from '../src/client/agent.ts';
import type { Intermediary } from '../src/client/intermediary.ts';
import type { ChainClient } from '../src/chain/index.ts';
import { PeerOnlineError } from '../src/errors.ts';
import { silentLogger } from '../src/log.ts';
import { ChannelKind, NATIVE_ASSET } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { GatewayDisputes } from './disputes.ts';

describe('gateway disputes', () => {
  it("refuses a payee's claim while its payer is online, before any transaction: a claim is for a payer that is gone", async () => {
    const store = new ChannelStore(':memory:');
    const sent: string[] = [];
    const payer = '0x00000000000000000000000000000000000000aa' as const;
    const disputes = new GatewayDisputes({
      client: {} as ChainClient,
      agent: { on: () => undefined, channels: () => [], watchPeer: () => undefined } as unknown as Agent,
      intermediary: {} as Intermediary,
      store,
      facts: store.service,
      logger: silentLogger,
      offlineMs: 60_000,
      checkMs: 60_000,
      serial: (job) => {
        sent.push('job');
        void job();
      },
    });
    const vc = { id: `0x${'11'.repeat(32)}` as const, params: { chainId: 1n, adjudicator: payer, participants: [payer, payer] as const, challengeDuration: 3600n, nonce: 1n, kind: ChannelKind.Stream }, assets: [NATIVE_ASSET], balances: [[10n, 0n]] as const, sigs: null };
    await expect(disputes.secureClaim(vc, { cumulative: 5n, sig: new Uint8Array(65) })).rejects.toThrow(PeerOnlineError);
    expect(sent).toEqual([]);
    store.close();
  });
});
