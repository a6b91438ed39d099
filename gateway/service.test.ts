import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/client/agent.ts';
import { deposit, readDispute, readHoldings, register, startDevnet, withAccount, type Devnet } from '../src/chain/index.ts';
import { Signer } from '../src/crypto/keys.ts';
import { toHex } from '../src/model/hash.ts';
import { NATIVE_ASSET } from '../src/model/types.ts';
import { silentLogger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MqttTransport } from '../src/transport/mqtt.ts';
import { tempDir } from '../src/testing/agents.ts';
import { chainFunding, waitFunded } from '../device/funding.ts';
import { startGateway, type RunningGateway } from './service.ts';

// The gateway service on a real chain and broker, in this process: it deposits its side,
// sees the channel funded, and refutes a device that registers an old state.

describe('gateway service', () => {
  let devnet: Devnet;
  let gateway: RunningGateway;
  beforeAll(async () => {
    devnet = await startDevnet();
    const dir = tempDir('picopay-gw-');
    const { writeKeystore } = await import('../src/crypto/keystore.ts');
    const key = Signer.random();
    writeKeystore(join(dir, 'key.json'), key, '', { scryptN: 1 << 10 });
    const hash = await devnet.deployer.walletClient.sendTransaction({ to: key.address, value: 10n ** 20n });
    await devnet.deployer.publicClient.waitForTransactionReceipt({ hash });
    gateway = await startGateway({
      dataDir: dir,
      password: '',
      rpcUrl: devnet.anvil.rpcUrl,
      chainId: devnet.anvil.chainId,
      adjudicator: devnet.deployer.adjudicator,
      maxDeposit: 10n ** 18n,
      holdTimeoutMs: 5000,
      // Slow polling: funding requests must not wait for it (see the virtual-channel test).
      fundingPollMs: 60_000,
      logger: silentLogger,
    });
  }, 60_000);
  afterAll(async () => {
    await gateway?.stop();
    await devnet?.stop();
  });

  /** A device agent connected to the gateway's broker, stopped after the test. */
  async function device(): Promise<{ agent: Agent; stop(): Promise<void> }> {
    const signer = Signer.random();
    const store = new ChannelStore(':memory:');
    const transport = new MqttTransport({ url: gateway.mqttUrl, self: signer.address, signer });
    const agent = new Agent({ signer, transport, store, chain: { chainId: BigInt(gateway.chainId), adjudicator: gateway.adjudicator } });
    agent.start();
    await transport.connect();
    return {
      agent,
      stop: async () => {
        agent.stop();
        await transport.close();
        store.close();
      },
    };
  }

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
    const device = Signer.random();
    const store = new ChannelStore(':memory:');
    const transport = new MqttTransport({ url: gateway.mqttUrl, self: device.address, signer: device });
    const agent = new Agent({ signer: device, transport, store, chain: { chainId: BigInt(gateway.chainId), adjudicator: gateway.adjudicator } });
    agent.start();
    await transport.connect();
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
      agent.stop();
      await transport.close();
      store.close();
    }
  }, 90_000);
});
