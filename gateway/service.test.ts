import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type AgentOptions } from '../src/client/agent.ts';
import { cumulativeOf, deposit, readDispute, readHoldings, register, registerVoucher, startDevnet, withAccount, type Devnet } from '../src/chain/index.ts';
import { Signer } from '../src/crypto/keys.ts';
import { OpenRejectedError, ProtocolError } from '../src/errors.ts';
import { toHex } from '../src/model/hash.ts';
import { ChannelKind, NATIVE_ASSET, type State } from '../src/model/types.ts';
import { silentLogger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MqttTransport } from '../src/transport/mqtt.ts';
import { tempDir } from '../src/testing/agents.ts';
import { chainFunding, waitFunded } from '../device/funding.ts';
import { type AdmissionLimits, DEFAULT_LIMITS } from './admission.ts';
import { type GatewayConfig, startGateway, type RunningGateway } from './service.ts';
import { writeKeystore } from '../src/crypto/keystore.ts';

// The gateway service on a real chain and broker, in this process: it deposits its side,
// sees the channel funded, and refutes a device that registers an old state.

let devnet: Devnet;
const running: (() => Promise<void>)[] = [];
beforeAll(async () => {
  devnet = await startDevnet();
}, 60_000);
afterAll(async () => {
  for (const stop of running.splice(0).reverse()) await stop();
  await devnet?.stop();
});

/** A gateway on the devnet with its embedded broker, with a fresh key holding 100 ETH. */
async function gatewayOnDevnet(limits: AdmissionLimits, extra: Partial<GatewayConfig> = {}): Promise<RunningGateway> {
  const dir = tempDir('picopay-gw-');
  const key = Signer.random();
  writeKeystore(join(dir, 'key.json'), key, '', { scryptN: 1 << 10 });
  const hash = await devnet.deployer.walletClient.sendTransaction({ to: key.address, value: 10n ** 20n });
  await devnet.deployer.publicClient.waitForTransactionReceipt({ hash });
  const gateway = await startGateway({
    dataDir: dir,
    password: '',
    rpcUrl: devnet.anvil.rpcUrl,
    chainId: devnet.anvil.chainId,
    adjudicator: devnet.deployer.adjudicator,
    limits,
    holdTimeoutMs: 5000,
    logger: silentLogger,
    ...extra,
  });
  running.push(() => gateway.stop());
  return gateway;
}

/** A device agent connected to the gateway's broker with its own key. */
async function connectDevice(gateway: RunningGateway, options: Partial<AgentOptions> = {}): Promise<{ agent: Agent; signer: Signer; stop(): Promise<void> }> {
  const signer = Signer.random();
  const store = new ChannelStore(':memory:');
  const transport = new MqttTransport({ url: gateway.mqttUrl, self: signer.address, signer });
  const agent = new Agent({ signer, transport, store, chain: { chainId: BigInt(gateway.chainId), adjudicator: gateway.adjudicator }, ...options });
  agent.start();
  await transport.connect();
  return {
    agent,
    signer,
    stop: async () => {
      agent.stop();
      await transport.close();
      store.close();
    },
  };
}

describe('gateway service', () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    // Slow polling: funding requests must not wait for it (see the virtual-channel test).
    gateway = await gatewayOnDevnet(DEFAULT_LIMITS, { fundingPollMs: 60_000 });
  }, 60_000);
  const device = () => connectDevice(gateway);

  it('backs a virtual channel as soon as both ledger channels hold their deposits, between two polls', async () => {
    const [a, b] = [await device(), await device()];
    try {
      const owner = devnet.clients[3]!;
      for (const d of [a, b]) {
        const ledger = await d.agent.open(gateway.address, { balances: [[10n ** 16n, 10n ** 16n]] });
        await deposit(owner, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 10n ** 16n });
      }
      // The gateway deposits its own side when a channel opens; the devices wait for it on-chain.
      const source = chainFunding({ rpcUrl: devnet.anvil.rpcUrl, chainId: BigInt(gateway.chainId), adjudicator: gateway.adjudicator, confirmations: 1 });
      for (const d of [a, b]) await waitFunded(source, d.agent.channels()[0]!, { timeoutMs: 20_000 });
      const vc = await a.agent.openVirtual(b.agent.address, { gateway: gateway.address, balances: [[10n ** 15n, 0n]] });
      expect(a.agent.isFunded(vc.id)).toBe(true);
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);

  it("a payer registers a zero voucher for its own stream: only its channel goes on-chain; the payee claims off-chain and is paid", async () => {
    // This gateway sweeps often, so that the registration is seen at once.
    const gw = await gatewayOnDevnet(DEFAULT_LIMITS, { sweepMs: 200 });
    const a = await connectDevice(gw);
    const b = await connectDevice(gw, { virtualLimits: { idleMs: 300 } });
    try {
      const owner = devnet.clients[5]!;
      const ledgers: `0x${string}`[] = [];
      for (const d of [a, b]) {
        const ledger = await d.agent.open(gw.address, { balances: [[10n ** 16n, 10n ** 16n]] });
        await deposit(owner, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 10n ** 16n });
        ledgers.push(ledger.id);
      }
      const source = chainFunding({ rpcUrl: devnet.anvil.rpcUrl, chainId: BigInt(gw.chainId), adjudicator: gw.adjudicator, confirmations: 1 });
      for (const [i, d] of [a, b].entries()) await waitFunded(source, d.agent.channel(ledgers[i]!), { timeoutMs: 20_000 });
      const vc = await a.agent.openVirtual(b.agent.address, { gateway: gw.address, kind: ChannelKind.Stream, balances: [[10n ** 15n, 0n]] });
      await expect.poll(() => b.agent.isFunded(vc.id), { timeout: 10_000 }).toBe(true);
      a.agent.payStream(vc.id, 10n ** 14n);
      await expect.poll(() => b.agent.channel(vc.id).voucher?.cumulative, { timeout: 10_000 }).toBe(10n ** 14n);
      // A grieves: a zero voucher, which needs no signature, then it goes quiet.
      await registerVoucher(withAccount(devnet.clients[6]!, devnet.anvil.accounts[6]!.privateKey), { params: vc.params, cumulative: 0n, signature: null });
      await a.stop();
      // The gateway registers A's channel; B claims its voucher (raised on-chain first) and is paid off-chain.
      await expect.poll(async () => Boolean(await readDispute(devnet.deployer, ledgers[0]!)), { timeout: 20_000 }).toBe(true);
      await expect.poll(() => b.agent.channel(ledgers[1]!).current.state.outcome.locked.length, { timeout: 20_000 }).toBe(0);
      expect(b.agent.channel(ledgers[1]!).current.state.outcome.balances[0]![0]).toBe(10n ** 16n + 10n ** 14n);
      expect(cumulativeOf((await readDispute(devnet.deployer, vc.id))!)).toBe(10n ** 14n);
      // B's channel never went on-chain.
      expect(await readDispute(devnet.deployer, ledgers[1]!)).toBeNull();
      const status = (await (await fetch(`${gw.httpUrl}/status`)).json()) as { disputes: { channel: string }[] };
      expect(status.disputes.map((d) => d.channel)).toEqual([ledgers[0]]);
    } finally {
      await a.stop().catch(() => {});
      await b.stop();
    }
  }, 60_000);

  it('closes a finished ledger channel on-chain, then retires it: gone from its status, its final state still on record', async () => {
    const d = await device();
    try {
      const ledger = await d.agent.open(gateway.address, { balances: [[10n ** 16n, 10n ** 16n]] });
      await deposit(devnet.clients[4]!, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 10n ** 16n });
      const source = chainFunding({ rpcUrl: devnet.anvil.rpcUrl, chainId: BigInt(gateway.chainId), adjudicator: gateway.adjudicator, confirmations: 1 });
      await waitFunded(source, ledger, { timeoutMs: 20_000 });
      await d.agent.pay(ledger.id, 10n ** 15n);
      await d.agent.finalize(ledger.id);
      const listed = async (): Promise<boolean> => ((await (await fetch(`${gateway.httpUrl}/status`)).json()) as { ledgerChannels: { id: string }[] }).ledgerChannels.some((c) => c.id === ledger.id);
      const end = Date.now() + 20_000;
      while ((await listed()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(await listed()).toBe(false);
      expect(await readHoldings(devnet.deployer, ledger.id, NATIVE_ASSET)).toEqual({ amount: 0n, concluded: true });
      const view = (await (await fetch(`${gateway.httpUrl}/channels/${ledger.id}`)).json()) as { phase: string; version: string };
      expect(view.phase).toBe('final');
    } finally {
      await d.stop();
    }
  }, 60_000);

  it('funds its side, and refutes an old state a device registers', async () => {
    const { agent, signer: device, stop } = await connectDevice(gateway);
    try {
      const ledger = await agent.open(gateway.address, { balances: [[10n ** 16n, 10n ** 16n]] });
      const owner = devnet.clients[2]!;
      await deposit(owner, { channelId: ledger.id, asset: NATIVE_ASSET, amount: 10n ** 16n });
      const funded = async (): Promise<boolean> => ((await (await fetch(`${gateway.httpUrl}/channels/${ledger.id}`)).json()) as { funded: boolean }).funded;
      const end = Date.now() + 20_000;
      while (!(await funded()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect(await funded()).toBe(true);

      const old = agent.channel(ledger.id).current; // version 0: the device holds all it put in
      await agent.pay(ledger.id, 10n ** 15n);
      // The device cheats: it registers version 0 on-chain.
      const fundHash = await devnet.deployer.walletClient.sendTransaction({ to: device.address, value: 10n ** 18n });
      await devnet.deployer.publicClient.waitForTransactionReceipt({ hash: fundHash });
      const cheater = withAccount(devnet.deployer, toHex(device.exportPrivateKey()));
      await register(cheater, { params: ledger.params, signed: old });
      const refuted = async (): Promise<boolean> => (await readDispute(cheater, ledger.id))?.version === 1n;
      const stop = Date.now() + 20_000;
      while (!(await refuted()) && Date.now() < stop) {
        await devnet.mine();
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await refuted()).toBe(true);
    } finally {
      await stop();
    }
  }, 90_000);
});

describe('admission: what an outsider or a careless device can make the gateway lock', () => {
  const FINNEY = 10n ** 15n;
  const status = async (gateway: RunningGateway) =>
    (await (await fetch(`${gateway.httpUrl}/status`)).json()) as { limits: Record<string, string | number>; ledgerChannels: { id: string }[] };

  it('a key that puts nothing in, or less than the minimum, gets no channel; one device stays within its count and cap, all within the total', async () => {
    const limits = { ...DEFAULT_LIMITS, maxDeposit: 30n * FINNEY, maxTotalDeposit: 50n * FINNEY, maxChannelsPerDevice: 2, minDeviceDeposit: FINNEY, maxUnfunded: 4 };
    const gateway = await gatewayOnDevnet(limits);
    const [outsider, d1, d2, d3] = [await connectDevice(gateway), await connectDevice(gateway), await connectDevice(gateway), await connectDevice(gateway)];
    running.push(outsider.stop, d1.stop, d2.stop, d3.stop);
    const open = (d: Awaited<ReturnType<typeof connectDevice>>, mine: bigint, gateways: bigint) => d.agent.open(gateway.address, { balances: [[mine, gateways]] });
    await expect(open(outsider, 0n, 10n * FINNEY)).rejects.toBeInstanceOf(OpenRejectedError);
    await expect(open(outsider, FINNEY - 1n, 10n * FINNEY)).rejects.toBeInstanceOf(OpenRejectedError);
    await open(d1, FINNEY, 20n * FINNEY);
    await expect(open(d1, FINNEY, 20n * FINNEY), 'past its deposit cap').rejects.toBeInstanceOf(OpenRejectedError);
    await open(d1, FINNEY, 10n * FINNEY);
    await expect(open(d1, FINNEY, 0n), 'past its channel count').rejects.toBeInstanceOf(OpenRejectedError);
    await open(d2, FINNEY, 20n * FINNEY);
    await expect(open(d3, FINNEY, FINNEY), 'past the total').rejects.toBeInstanceOf(OpenRejectedError);
    // An asset the gateway does not hold, or ETH moved to another position to double a cap.
    const FAKE = `0x${'fa'.repeat(20)}` as const;
    await expect(d3.agent.open(gateway.address, { assets: [FAKE, NATIVE_ASSET], balances: [[FINNEY, 0n], [FINNEY, FINNEY]] })).rejects.toBeInstanceOf(OpenRejectedError);
    await open(d3, FINNEY, 0n);
    await expect(open(d3, FINNEY, 0n), 'past the channels waiting for a deposit').rejects.toBeInstanceOf(OpenRejectedError);
    const s = await status(gateway);
    expect(s.ledgerChannels).toHaveLength(4);
    expect(s.limits).toMatchObject({ maxDeposit: String(30n * FINNEY), maxTotalDeposit: String(50n * FINNEY), maxChannelsPerDevice: 2, minDeviceDeposit: String(FINNEY) });
    // None of them is funded by its device: the gateway has deposited nothing.
    for (const c of s.ledgerChannels) expect(await readHoldings(devnet.deployer, c.id as `0x${string}`, NATIVE_ASSET)).toEqual({ amount: 0n, concluded: false });
  }, 60_000);

  it('deposits only after the device has, refuses payments until both are in, and abandons a channel its device never funds', async () => {
    const gateway = await gatewayOnDevnet({ ...DEFAULT_LIMITS, fundingTimeoutMs: 1500 }, { fundingPollMs: 100 });
    const [idle, payer] = await Promise.all([connectDevice(gateway), connectDevice(gateway)]);
    running.push(idle.stop, payer.stop);
    const unfunded = await idle.agent.open(gateway.address, { balances: [[FINNEY, 10n * FINNEY]] });
    const funded = await payer.agent.open(gateway.address, { balances: [[FINNEY, 10n * FINNEY]] });
    // Nothing moves in a channel that is not funded on both sides, not even as a "close".
    await expect(idle.agent.pay(unfunded.id, 1n)).rejects.toBeInstanceOf(ProtocolError);
    const grab = (s: State) => ({ balances: [[s.outcome.balances[0]![0] + 10n * FINNEY, 0n]] as const, locked: [], isFinal: true });
    await expect(idle.agent.update(unfunded.id, grab)).rejects.toBeInstanceOf(ProtocolError);
    await deposit(devnet.clients[5]!, { channelId: funded.id, asset: NATIVE_ASSET, amount: FINNEY });
    const source = chainFunding({ rpcUrl: devnet.anvil.rpcUrl, chainId: BigInt(gateway.chainId), adjudicator: gateway.adjudicator, confirmations: 1 });
    await waitFunded(source, funded, { timeoutMs: 20_000 });
    expect(await readHoldings(devnet.deployer, funded.id, NATIVE_ASSET)).toEqual({ amount: 11n * FINNEY, concluded: false });
    await payer.agent.pay(funded.id, 1n);
    // The idle device's channel expires: gone from the gateway's status, nothing of the gateway's in it.
    const listed = async (): Promise<boolean> => (await status(gateway)).ledgerChannels.some((c) => c.id === unfunded.id);
    const end = Date.now() + 20_000;
    while ((await listed()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect(await listed()).toBe(false);
    expect(await readHoldings(devnet.deployer, unfunded.id, NATIVE_ASSET)).toEqual({ amount: 0n, concluded: false });
    expect((await status(gateway)).ledgerChannels.map((c) => c.id)).toEqual([funded.id]);
  }, 60_000);
});
