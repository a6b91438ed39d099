import { describe, expect, it } from 'vitest';
import { agentPair, CHAIN, intercept, makeParty, stoppedAfterEach, tempDir, until } from '../testing/agents.ts';
import { gatewayNetwork } from '../testing/gateway.ts';
import { ChannelClosedError } from '../errors.ts';
import { ChannelKind } from '../model/types.ts';
import { MemoryNetwork } from '../transport/memory.ts';
import { decodeMessage, encodeMessage } from '../wire/codec.ts';
import { makeSync } from '../channel/sync.ts';
import { MessageType } from '../wire/messages.ts';
import { Agent } from './agent.ts';

// A channel that is done leaves memory, the resync set and the live store; the archive
// keeps it for audits and for a peer that resynchronises late.

const live = stoppedAfterEach();

describe('retiring channels', () => {
  it('a settled virtual channel leaves both devices; its final state stays on record, and a restart does not bring it back', async () => {
    const { a, b, g, intermediary } = await gatewayNetwork(live, { seed: 3 });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[50n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    a.agent.payStream(vc.id, 20n);
    await until(() => b.agent.channel(vc.id).voucher?.cumulative === 20n);
    await a.agent.settleVirtual(vc.id);
    await until(() => b.agent.isSettled(vc.id));

    for (const p of [a, b]) {
      await until(() => !p.agent.channels().some((c) => c.id === vc.id));
      expect(p.store.loadChannels().map((c) => c.id)).not.toContain(vc.id);
      expect(p.agent.channel(vc.id).phase).toBe('final');
      expect(p.agent.isSettled(vc.id)).toBe(true);
      expect(() => p.agent.payStream(vc.id, 1n)).toThrow(ChannelClosedError);
    }
    expect(intermediary.virtualChannels()).toEqual([]);
    // Restarted on its store, the payee resumes its ledger channel only.
    b.agent.stop();
    const again = new Agent({ signer: b.signer, transport: b.transport, store: b.store, chain: CHAIN });
    again.start();
    try {
      expect(again.channels().map((c) => c.params.kind)).toEqual([ChannelKind.Ledger]);
      expect(again.channel(vc.id).current.state.outcome.balances[0]).toEqual([30n, 20n]);
    } finally {
      again.stop();
    }
  });

  it('a peer that missed the last acceptance gets the final state from the archive after the other side retired the channel', async () => {
    const { a, b } = agentPair(live, new MemoryNetwork({ seed: 4 }));
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 0n]] });
    await a.agent.pay(ch.id, 10n);
    let lost = true;
    intercept(b, MessageType.UpdateAccept, [], () => lost);
    const finalized = a.agent.finalize(ch.id);
    await until(() => b.agent.channel(ch.id).phase === 'final');
    b.agent.retire(ch.id);
    expect(b.agent.channels()).toEqual([]);
    lost = false;
    // a retransmits its final proposal; b answers from its archive.
    const state = await finalized;
    expect(state.state.isFinal).toBe(true);
    expect(a.agent.channel(ch.id).phase).toBe('final');
    expect(b.agent.channels()).toEqual([]);
  });

  it('refuses to retire a channel that is not final', async () => {
    const { a, b } = agentPair(live, new MemoryNetwork({ seed: 5 }));
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 0n]] });
    expect(() => a.agent.retire(ch.id)).toThrow(ChannelClosedError);
    expect(a.agent.channels()).toHaveLength(1);
  });

  it('an accepted open the proposer never completes expires; a replay of its proposal opens nothing new', async () => {
    const network = new MemoryNetwork({ seed: 6 });
    const dir = tempDir();
    const a = makeParty(network, dir, 'a');
    const b = makeParty(network, dir, 'b', { timing: { retransmitMs: 10, maxRetransmitMs: 40, requestTimeoutMs: 100 } });
    live.push(a, b);
    // The proposer takes the acceptance and never answers it: it proposed to hold b's resources.
    const proposals: Uint8Array[] = [];
    const send = a.transport.send.bind(a.transport);
    a.transport.send = async (to, frame) => {
      const type = decodeMessage(frame).type;
      if (type === MessageType.OpenPropose) proposals.push(frame);
      if (type === MessageType.OpenPropose || type === MessageType.OpenReject) return send(to, frame);
    };
    void a.agent.open(b.signer.address, { balances: [[100n, 0n]] }).catch(() => {});
    await until(() => b.agent.channels().length === 1);
    const id = b.agent.channels()[0]!.id;
    await until(() => b.agent.channels().length === 0);
    expect(b.store.loadChannels()).toEqual([]);
    expect(b.agent.channel(id).phase).toBe('opening');
    // The captured proposal, sent again, is recognised (the archive keeps what was accepted).
    for (const frame of proposals) network.forge(a.signer.address, b.signer.address, frame);
    // A Sync claiming the open completed, without the proposer's real signature, brings nothing back.
    const archived = b.agent.channel(id);
    const sigs = archived.idx === 0 ? [archived.current.sigs[0]!, new Uint8Array(65).fill(1)] : [new Uint8Array(65).fill(1), archived.current.sigs[1]!];
    const forged = makeSync({ ...archived, current: { ...archived.current, sigs: sigs as [Uint8Array, Uint8Array] } })!;
    network.forge(a.signer.address, b.signer.address, encodeMessage(forged));
    await network.idle();
    expect(b.agent.channels()).toEqual([]);
    expect(b.store.loadChannels()).toEqual([]);
  });
});
