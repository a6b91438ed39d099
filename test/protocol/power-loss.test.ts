import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/client/agent.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { silentLogger } from '../../src/log.ts';
import { ChannelKind } from '../../src/model/types.ts';
import { ChannelStore } from '../../src/store/store.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { Intermediary } from '../../src/client/intermediary.ts';
import { CHAIN, FAST, tempDir, until } from '../../src/testing/agents.ts';
import { PowerLossStore } from '../../src/testing/powerLossStore.ts';

// A stream payer loses power: the vouchers it sent since its last fsynced commit are gone
// from its store, while the payee holds them. Restarted, it resyncs, takes back the
// highest voucher bearing its own signature, and the channel settles at what it paid.

describe('a stream payer that loses power', () => {
  it('takes back its highest voucher from the payee on the resync and settles at what it paid', async () => {
    const network = new MemoryNetwork({ seed: 7 });
    const dir = tempDir('picopay-power-');
    const [gs, as, bs] = [Signer.random(), Signer.random(), Signer.random()];
    const agents: Agent[] = [];
    const boot = (signer: Signer, store: ChannelStore, extra = {}): Agent => {
      const agent = new Agent({ signer, transport: network.endpoint(signer.address), store, chain: CHAIN, timing: FAST, ...extra });
      agent.start();
      agents.push(agent);
      return agent;
    };
    const gStore = new ChannelStore(join(dir, 'g.db'), { durability: 'normal' });
    const intermediary = new Intermediary({ records: gStore.service, chain: CHAIN, holdTimeoutMs: 5000, logger: silentLogger });
    const g = boot(gs, gStore, { policy: { acceptUpdate: intermediary.decide } });
    intermediary.attach(g);
    const bStore = new ChannelStore(join(dir, 'b.db'), { durability: 'normal' });
    const b = boot(bs, bStore);
    let aStore = new PowerLossStore(join(dir, 'a.db'));
    let a = boot(as, aStore);
    try {
      const la = await a.open(gs.address, { balances: [[100n, 100n]] });
      const lb = await b.open(gs.address, { balances: [[100n, 100n]] });
      const vc = await a.openVirtual(bs.address, { gateway: gs.address, kind: ChannelKind.Stream, balances: [[60n, 0n]] });
      await until(() => b.channels().some((c) => c.id === vc.id) && b.isFunded(vc.id));
      for (let i = 0; i < 10; i++) a.payStream(vc.id, 2n);
      expect(await until(() => b.channel(vc.id).voucher?.cumulative === 20n)).toBe(true);
      expect(aStore.unsynced).toBeGreaterThan(0);

      // Power fails: the payer's process and its unsynced writes are gone.
      a.stop();
      network.detach(as.address);
      aStore.powerLoss();
      aStore = new PowerLossStore(join(dir, 'a.db'));
      a = boot(as, aStore);
      expect(a.channel(vc.id).voucher?.cumulative ?? 0n).toBeLessThan(20n);

      expect(await until(() => a.channel(vc.id).voucher?.cumulative === 20n)).toBe(true);
      await b.settleVirtual(vc.id);
      expect(await until(() => a.isSettled(vc.id) && b.isSettled(vc.id))).toBe(true);
      expect(a.channel(la.id).current.state.outcome.balances[0]![0]).toBe(80n);
      expect(b.channel(lb.id).current.state.outcome.balances[0]![0]).toBe(120n);
      const gOwn = [la.id, lb.id].reduce((sum, id) => sum + g.channel(id).current.state.outcome.balances[0]![g.channel(id).idx], 0n);
      expect(gOwn).toBe(200n);
    } finally {
      for (const agent of agents) agent.stop();
      for (const store of [gStore, bStore, aStore]) store.close();
    }
  });
});
