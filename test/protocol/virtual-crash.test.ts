import fc from 'fast-check';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/client/agent.ts';
import { silentLogger } from '../../src/log.ts';
import { ChannelKind } from '../../src/model/types.ts';
import { ChannelStore } from '../../src/store/store.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { Intermediary } from '../../src/client/intermediary.ts';
import { CHAIN, FAST, RecordingSigner, sleep, tempDir, until } from '../../src/testing/agents.ts';
import { CrashingStore } from '../../src/testing/crashStore.ts';
import { Signer } from '../../src/crypto/keys.ts';

// A stream payee dies at a random persistence point while vouchers arrive, under message
// faults, and restarts from its store: it never holds less than the highest voucher it
// acted on (less the group-commit allowance), the settlement pays it everything the payer
// signed, and the gateway gets back exactly what it locked.

const fresh = (): RecordingSigner => new RecordingSigner(Signer.random().exportPrivateKey());

describe('stream payee crash', () => {
  it('keeps the highest voucher it acted on; settlement pays all the payer signed', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom('before' as const, 'after' as const),
        fc.double({ min: 0, max: 0.2, noNaN: true }),
        fc.array(fc.bigInt({ min: 1n, max: 3n }), { minLength: 4, maxLength: 14 }),
        fc.constantFrom(0n, 4n),
        async (seed, crashAt, mode, fault, amounts, groupCommit) => {
          const network = new MemoryNetwork({ seed });
          const dir = tempDir('picopay-vcrash-');
          const stores: ChannelStore[] = [];
          const agents: Agent[] = [];
          const agentFor = (signer: RecordingSigner, store: ChannelStore, extra = {}): Agent => {
            const agent = new Agent({ signer, transport: network.endpoint(signer.address), store, chain: CHAIN, timing: FAST, ...extra });
            agent.start();
            stores.push(store);
            agents.push(agent);
            return agent;
          };
          const gs = fresh();
          const gStore = new ChannelStore(join(dir, 'g.db'), { durability: 'normal' });
          const intermediary = new Intermediary({ records: gStore.service, chain: CHAIN, holdTimeoutMs: 5000, logger: silentLogger });
          const g = agentFor(gs, gStore, { policy: { acceptUpdate: intermediary.decide } });
          intermediary.attach(g);
          const as = fresh();
          const bs = fresh();
          const a = agentFor(as, new ChannelStore(join(dir, 'a.db'), { durability: 'normal' }));
          let relied = 0n;
          const watch = (agent: Agent, store: CrashingStore): void => {
            agent.on('voucher', (e) => {
              if (!store.crashed && e.cumulative > relied) relied = e.cumulative;
            });
          };
          // The payee's process dies at the armed point and comes back from its store.
          const bootB = (): { agent: Agent; store: CrashingStore } => {
            const store: CrashingStore = new CrashingStore(join(dir, 'b.db'), Number.POSITIVE_INFINITY, mode, () => {
              network.disconnect(bs.address);
              setTimeout(restartB, 10);
            });
            const agent = agentFor(bs, store, { voucherDurableEvery: groupCommit });
            watch(agent, store);
            return { agent, store };
          };
          const restartB = (): void => {
            b.stop();
            bStore.close();
            network.detach(bs.address);
            ({ agent: b, store: bStore } = bootB());
          };
          let { agent: b, store: bStore } = bootB();
          try {
            const la = await a.open(gs.address, { balances: [[100n, 100n]] });
            const lb = await b.open(gs.address, { balances: [[100n, 100n]] });
            const vc = await a.openVirtual(bs.address, { gateway: gs.address, kind: ChannelKind.Stream, balances: [[60n, 0n]] });
            await until(() => b.channels().some((c) => c.id === vc.id) && b.isFunded(vc.id));
            network.setFaults({ drop: fault, duplicate: fault, reorder: fault });
            bStore.arm(crashAt);
            let paid = 0n;
            for (const amount of amounts) {
              paid = a.payStream(vc.id, amount);
              await sleep(2);
              const highest = (): bigint => b.channel(vc.id).voucher?.cumulative ?? 0n;
              // Group commit may lose less than `groupCommit` of what the payee acted on, never more.
              if (!bStore.crashed) expect(highest() + groupCommit).toBeGreaterThanOrEqual(relied);
            }
            await until(() => !bStore.crashed);
            expect((b.channel(vc.id).voucher?.cumulative ?? 0n) + groupCommit).toBeGreaterThanOrEqual(relied);
            network.setFaults({});
            await a.settleVirtual(vc.id).catch(() => undefined); // the payee may die mid-way: checked below
            expect(await until(() => !bStore.crashed && b.isSettled(vc.id) && a.isSettled(vc.id), 15_000)).toBe(true);
            // The payee gets everything the payer signed, whatever it missed in transit.
            expect(b.channel(lb.id).current.state.outcome.balances[0]![b.channel(lb.id).idx]).toBe(100n + paid);
            expect(a.channel(la.id).current.state.outcome.balances[0]![a.channel(la.id).idx]).toBe(100n - paid);
            const gOwn = [la.id, lb.id].reduce((sum, id) => sum + g.channel(id).current.state.outcome.balances[0]![g.channel(id).idx], 0n);
            expect(gOwn).toBe(200n);
          } finally {
            for (const agent of agents) agent.stop();
            for (const store of stores) store.close();
          }
        },
      ),
      { numRuns: 15 },
    );
  });
});
