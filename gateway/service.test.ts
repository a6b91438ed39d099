import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../src/client/agent.ts';
import { deposit, readDispute, register, startDevnet, withAccount, type Devnet } from '../src/chain/index.ts';
import { Signer } from '../src/crypto/keys.ts';
import { toHex } from '../src/model/hash.ts';
import { NATIVE_ASSET } from '../src/model/types.ts';
import { silentLogger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MqttTransport } from '../src/transport/mqtt.ts';
import { tempDir } from '../test/helpers/agents.ts';
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
      logger: silentLogger,
    });
  }, 60_000);
  afterAll(async () => {
    await gateway?.stop();
    await devnet?.stop();
  });

  it('funds its side, and refutes an old state a device registers', async () => {
    const device = Signer.random();
    const store = new ChannelStore(':memory:');
    const transport = new MqttTransport({ url: gateway.mqttUrl, self: device.address });
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
