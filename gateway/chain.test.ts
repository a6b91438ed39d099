import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/client/agent.ts';
import { type ChainClient, cooperativeClose, deposit, type PendingTx, readHoldings } from '../src/chain/index.ts';
import { createTestClient, http } from 'viem';
import type { Devnet } from '../src/chain/devnet.ts';
import { startDevnet } from '../src/chain/devnet.ts';
import { silentLogger } from '../src/log.ts';
import { type Bytes32, NATIVE_ASSET } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';
import { FAST, makeParty, RecordingSigner, stoppedAfterEach, tempDir, until } from '../src/testing/agents.ts';
import { party } from '../src/testing/chain.ts';
import { Intermediary } from '../src/client/intermediary.ts';
import { GatewayChain } from './chain.ts';

// The gateway's chain duties across a crash: a ledger channel closed on-chain (by the
// gateway before it died, or by anyone) is retired when the gateway comes back, never
// left live for ever.

describe('gateway chain duties after a restart', () => {
  let devnet: Devnet;
  beforeAll(async () => {
    // One gateway account per test: nonces and balances stay the test's own.
    devnet = await startDevnet({ accounts: 14 });
  }, 60_000);
  afterAll(async () => {
    await devnet?.stop();
  });
  const live = stoppedAfterEach();

  it('a final ledger channel already concluded on-chain is retired at start, whether or not the gateway sent the close', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const gp = party(devnet, 6);
    const chain = { chainId: devnet.deployer.chainId, adjudicator: devnet.deployer.adjudicator };
    const gPath = join(dir, 'g.db');
    const g = makeParty(network, dir, 'g', { chain }, new RecordingSigner(gp.signer.exportPrivateKey()), new ChannelStore(gPath, { durability: 'normal' }));
    const a = makeParty(network, dir, 'a', { chain });
    live.push(a);
    const channels: Bytes32[] = [];
    for (let i = 0; i < 2; i++) {
      const ch = await a.agent.open(gp.address, { balances: [[10n ** 15n, 0n]] });
      await deposit(devnet.clients[7]!, { channelId: ch.id, asset: NATIVE_ASSET, amount: 10n ** 15n });
      await a.agent.finalize(ch.id);
      channels.push(ch.id);
    }
    await until(() => channels.every((id) => g.agent.channel(id).phase === 'final'));
    // The gateway dies with both final; one close had gone out before (its fact recorded),
    // the other the device sent itself.
    g.agent.stop();
    g.store.service.setFact(`closed:${channels[0]}`, true);
    for (const id of channels) await cooperativeClose(devnet.clients[7]!, { params: g.agent.channel(id).params, signed: g.agent.channel(id).current });
    g.store.close();
    network.detach(gp.address);

    const store = new ChannelStore(gPath, { durability: 'normal' });
    const agent = new Agent({ signer: gp.signer, transport: network.endpoint(gp.address), store, chain, timing: FAST });
    const intermediary = new Intermediary({ records: store.service, chain, holdTimeoutMs: 1000, logger: silentLogger });
    const duties = new GatewayChain({ client: gp.client, agent, store, facts: store.service, intermediary, logger: silentLogger, pollMs: 60_000 });
    agent.start();
    try {
      await duties.start();
      await until(() => agent.channels().length === 0);
      await duties.idle();
      for (const id of channels) {
        expect((await readHoldings(gp.client, id, NATIVE_ASSET)).concluded).toBe(true);
        expect(store.service.fact(`closed:${id}`)).toBeUndefined();
        expect(agent.channel(id).phase).toBe('final');
      }
      expect(store.loadChannels()).toEqual([]);
    } finally {
      await duties.stop();
      agent.stop();
      store.close();
    }
  }, 60_000);

  /** The gateway (anvil account `i`, its own per test) and a device, as agents on a memory network, the gateway's store on disk. */
  function gatewayAndDevice(i: number) {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const gp = party(devnet, i);
    const chain = { chainId: devnet.deployer.chainId, adjudicator: devnet.deployer.adjudicator };
    const store = new ChannelStore(join(dir, 'g.db'), { durability: 'normal' });
    const g = makeParty(network, dir, 'g', { chain }, new RecordingSigner(gp.signer.exportPrivateKey()), store);
    const a = makeParty(network, dir, 'a', { chain });
    live.push(a, g);
    return { gp, chain, store, g, a };
  }

  it('its own deposit stuck and then lost by the node is sent again with the same nonce by the next poll: the channel is funded once, never twice', async () => {
    const { ch, gp, duties, broadcasts } = await fundingRun(8, (base) => base);
    const test = createTestClient({ mode: 'anvil', transport: http(devnet.anvil.rpcUrl) });
    // The run's client gives up on an unmined transaction at once: the poll must take over.
    await test.setAutomine(false);
    try {
      await duties.start();
      await expect.poll(() => broadcasts.length, { timeout: 10_000 }).toBeGreaterThan(0);
      // The node loses it; mining resumes.
      await test.dropTransaction({ hash: broadcasts[0]!.hashes[0]! });
      await test.setAutomine(true);
      await test.mine({ blocks: 1 });
      await expect.poll(() => duties.isFunded(ch.id), { timeout: 20_000 }).toBe(true);
      expect((await readHoldings(gp.client, ch.id, NATIVE_ASSET)).amount).toBe(3n * 10n ** 15n);
      // Re-broadcast, always with the one nonce.
      expect(broadcasts.length).toBeGreaterThan(1);
      expect(new Set(broadcasts.map((p) => p.nonce)).size).toBe(1);
    } finally {
      await test.setAutomine(true);
      await duties.stop();
    }
  }, 60_000);

  it('a cooperative close that fails (the RPC away) is sent again by a later poll, and the channel retires', async () => {
    const { gp, chain, store, g, a } = gatewayAndDevice(9);
    // The RPC refuses the first two calls of the gateway's that would send a transaction.
    let refusals = 2;
    const publicClient = new Proxy(gp.client.publicClient, {
      get: (target, key) => (key === 'estimateContractGas' ? async (...args: unknown[]) => (refusals-- > 0 ? Promise.reject(new Error('fetch failed: RPC away')) : (target.estimateContractGas as (...a: unknown[]) => unknown)(...args)) : Reflect.get(target, key)),
    });
    const client = { ...gp.client, publicClient };
    const intermediary = new Intermediary({ records: store.service, chain, holdTimeoutMs: 1000, logger: silentLogger });
    const duties = new GatewayChain({ client, agent: g.agent, store, facts: store.service, intermediary, logger: silentLogger, pollMs: 50, retryMs: 50 });
    try {
      await duties.start();
      const ch = await a.agent.open(gp.address, { balances: [[10n ** 15n, 0n]] });
      await deposit(devnet.clients[7]!, { channelId: ch.id, asset: NATIVE_ASSET, amount: 10n ** 15n });
      await expect.poll(() => duties.isFunded(ch.id), { timeout: 20_000 }).toBe(true);
      await a.agent.finalize(ch.id);
      await expect.poll(() => g.agent.channels().some((c) => c.id === ch.id), { timeout: 20_000 }).toBe(false);
      expect(refusals).toBeLessThan(0);
      expect((await readHoldings(gp.client, ch.id, NATIVE_ASSET)).concluded).toBe(true);
    } finally {
      await duties.stop();
    }
  }, 60_000);

  it('a cooperative close a re-org drops after the channel retired is sent again from the archived final state', async () => {
    const { gp, chain, store, g, a } = gatewayAndDevice(13);
    const test = createTestClient({ mode: 'anvil', transport: http(devnet.anvil.rpcUrl) });
    const intermediary = new Intermediary({ records: store.service, chain, holdTimeoutMs: 1000, logger: silentLogger });
    const duties = new GatewayChain({ client: gp.client, agent: g.agent, store, facts: store.service, intermediary, logger: silentLogger, pollMs: 50, retryMs: 50, eventPollMs: 50 });
    try {
      await duties.start();
      const ch = await a.agent.open(gp.address, { balances: [[10n ** 15n, 0n]] });
      await deposit(devnet.clients[7]!, { channelId: ch.id, asset: NATIVE_ASSET, amount: 10n ** 15n });
      await expect.poll(() => duties.isFunded(ch.id), { timeout: 20_000 }).toBe(true);
      await a.agent.finalize(ch.id);
      await expect.poll(() => g.agent.channels().some((c) => c.id === ch.id), { timeout: 20_000 }).toBe(false);
      const device = await devnet.deployer.publicClient.getBalance({ address: a.signer.address });
      expect(device).toBe(10n ** 15n);
      // The block with the close is replaced: the device's payout is gone, and comes back.
      await test.request({ method: 'anvil_reorg' as never, params: [1, []] as never });
      expect((await readHoldings(gp.client, ch.id, NATIVE_ASSET)).concluded).toBe(false);
      await expect.poll(async () => (await readHoldings(gp.client, ch.id, NATIVE_ASSET)).concluded, { timeout: 20_000 }).toBe(true);
      expect((await readHoldings(gp.client, ch.id, NATIVE_ASSET)).amount).toBe(0n);
      expect(await devnet.deployer.publicClient.getBalance({ address: a.signer.address })).toBe(10n ** 15n);
    } finally {
      await duties.stop();
    }
  }, 60_000);

  /** A gateway (anvil account `i`) with chain duties through `client(base)`, and a device whose channel [1e15 device, 2e15 gateway] is open and whose side is deposited. */
  async function fundingRun(i: number, client: (base: ChainClient) => ChainClient) {
    const { gp, chain, store, g, a } = gatewayAndDevice(i);
    const ch = await a.agent.open(gp.address, { balances: [[10n ** 15n, 2n * 10n ** 15n]] });
    await deposit(devnet.clients[7]!, { channelId: ch.id, asset: NATIVE_ASSET, amount: 10n ** 15n });
    const broadcasts: PendingTx[] = [];
    const base = { ...gp.client, send: { stuckAfterMs: 100, maxReplacements: 0, onBroadcast: (p: PendingTx) => void broadcasts.push(structuredClone(p)) } };
    const intermediary = new Intermediary({ records: store.service, chain, holdTimeoutMs: 1000, logger: silentLogger });
    const duties = new GatewayChain({ client: client(base), agent: g.agent, store, facts: store.service, intermediary, logger: silentLogger, pollMs: 50, recheckMs: 1000 });
    return { ch, gp, duties, broadcasts };
  }

  /** `client` with one of its public client's methods replaced. */
  const replacing = (client: ChainClient, method: string, by: (real: (...args: unknown[]) => Promise<unknown>, ...args: unknown[]) => Promise<unknown>): ChainClient => ({
    ...client,
    publicClient: new Proxy(client.publicClient, {
      get: (target, key) => {
        const real = Reflect.get(target, key) as (...args: unknown[]) => Promise<unknown>;
        return key === method ? (...args: unknown[]) => by(real.bind(target), ...args) : real;
      },
    }),
  });

  it('a node whose holdings lag behind: the deposit that succeeded is never sent again, whatever the holdings say', async () => {
    let lagging = true;
    let lagged = 0;
    const run = await fundingRun(10, (base) =>
      replacing(base, 'readContract', async (real, q) => ((q as { functionName: string }).functionName === 'holdings' && lagging ? (lagged++, 10n ** 15n) : real(q))),
    );
    try {
      await run.duties.start();
      await expect.poll(() => run.broadcasts.length, { timeout: 10_000 }).toBeGreaterThan(0);
      // Many polls see the channel short of the gateway's side; the recovery reads the deposit's own receipt.
      await expect.poll(() => lagged, { timeout: 10_000 }).toBeGreaterThan(20);
      await run.duties.idle();
      lagging = false;
      await expect.poll(() => run.duties.isFunded(run.ch.id), { timeout: 20_000 }).toBe(true);
      expect((await readHoldings(run.gp.client, run.ch.id, NATIVE_ASSET)).amount).toBe(3n * 10n ** 15n);
      expect(new Set(run.broadcasts.map((p) => p.nonce)).size).toBe(1);
    } finally {
      await run.duties.stop();
    }
  }, 60_000);

  it('a send that fails after the node took the transaction: it was journalled before, and is never sent twice', async () => {
    let failures = 1;
    const run = await fundingRun(11, (base) =>
      replacing(base, 'sendRawTransaction', async (real, q) => {
        const hash = await real(q);
        if (failures-- > 0) throw new Error('request timed out');
        return hash;
      }),
    );
    try {
      await run.duties.start();
      await expect.poll(() => run.duties.isFunded(run.ch.id), { timeout: 20_000 }).toBe(true);
      expect(failures).toBeLessThan(1);
      expect((await readHoldings(run.gp.client, run.ch.id, NATIVE_ASSET)).amount).toBe(3n * 10n ** 15n);
      expect(new Set(run.broadcasts.map((p) => p.nonce)).size).toBe(1);
    } finally {
      await run.duties.stop();
    }
  }, 60_000);

  it('deposits re-orged away after they counted: the channel is unfunded again, its own deposit sent again (once), funded once the device deposits again', async () => {
    const run = await fundingRun(12, (base) => base);
    const test = createTestClient({ mode: 'anvil', transport: http(devnet.anvil.rpcUrl) });
    // The block of the device's deposit, the last one mined.
    const before = await devnet.deployer.publicClient.getBlockNumber({ cacheTime: 0 });
    try {
      await run.duties.start();
      await expect.poll(() => run.duties.isFunded(run.ch.id), { timeout: 20_000 }).toBe(true);
      // A fork from before the device's deposit: both deposits are gone.
      const depth = Number((await devnet.deployer.publicClient.getBlockNumber({ cacheTime: 0 })) - before + 1n);
      await test.request({ method: 'anvil_reorg' as never, params: [depth, []] as never });
      expect((await readHoldings(run.gp.client, run.ch.id, NATIVE_ASSET)).amount).toBe(0n);
      await expect.poll(() => run.duties.isFunded(run.ch.id), { timeout: 20_000 }).toBe(false);
      // The gateway's own deposit comes back; the device deposits again.
      await expect.poll(async () => (await readHoldings(run.gp.client, run.ch.id, NATIVE_ASSET)).amount, { timeout: 20_000 }).toBe(2n * 10n ** 15n);
      await deposit(devnet.clients[7]!, { channelId: run.ch.id, asset: NATIVE_ASSET, amount: 10n ** 15n });
      await expect.poll(() => run.duties.isFunded(run.ch.id), { timeout: 20_000 }).toBe(true);
      // The gateway's side exactly once: no version of its first deposit landed after the fork, so it was sent again.
      expect((await readHoldings(run.gp.client, run.ch.id, NATIVE_ASSET)).amount).toBe(3n * 10n ** 15n);
    } finally {
      await run.duties.stop();
    }
  }, 60_000);
});
