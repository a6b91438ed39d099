import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deposit, readDispute, register, startDevnet, startWatchtower, withAccount, type Devnet } from '../chain/index.ts';
import { Signer } from '../crypto/keys.ts';
import { toHex } from '../model/hash.ts';
import { NATIVE_ASSET } from '../model/types.ts';
import { MemoryNetwork } from '../transport/memory.ts';
import { makeParty, tempDir, until } from '../testing/agents.ts';
import { latestFrom } from './watchtower.ts';

// A device's own watchtower: reading only the device's store, it answers a peer that
// registers an old state on-chain.

describe('picopay watchtower', () => {
  let devnet: Devnet;
  beforeAll(async () => {
    devnet = await startDevnet();
  });
  afterAll(async () => devnet?.stop());

  it('refutes the peer registering an old state, from what the device stored', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const chain = { chain: { chainId: devnet.deployer.chainId, adjudicator: devnet.deployer.adjudicator } };
    const cheat = makeParty(network, dir, 'cheat', chain);
    const device = makeParty(network, dir, 'device', chain);
    try {
      const ch = await cheat.agent.open(device.signer.address, { balances: [[10n ** 16n, 10n ** 16n]] });
      await until(() => device.agent.channels()[0]?.phase === 'open');
      await deposit(devnet.clients[1]!, { channelId: ch.id, asset: NATIVE_ASSET, amount: 2n * 10n ** 16n });
      const old = cheat.agent.channel(ch.id).current;
      await cheat.agent.pay(ch.id, 10n ** 15n);
      await network.idle();

      const towerKey = Signer.random();
      const fund = await devnet.deployer.walletClient.sendTransaction({ to: towerKey.address, value: 10n ** 18n });
      await devnet.deployer.publicClient.waitForTransactionReceipt({ hash: fund });
      const tower = await startWatchtower(withAccount(devnet.deployer, toHex(towerKey.exportPrivateKey())), {
        confirmations: 1,
        pollIntervalMs: 50,
        latest: (id) => latestFrom(device.store.loadChannel(id)),
      });
      try {
        const fundCheat = await devnet.deployer.walletClient.sendTransaction({ to: cheat.signer.address, value: 10n ** 18n });
        await devnet.deployer.publicClient.waitForTransactionReceipt({ hash: fundCheat });
        const cheater = withAccount(devnet.deployer, toHex(cheat.signer.exportPrivateKey()));
        await register(cheater, { params: ch.params, signed: old });
        let version = 0n;
        for (let i = 0; i < 100 && version !== 1n; i++) {
          await devnet.mine();
          await tower.poll();
          version = (await readDispute(cheater, ch.id))?.version ?? 0n;
        }
        expect(version).toBe(1n);
      } finally {
        await tower.stop();
      }
    } finally {
      for (const p of [cheat, device]) {
        p.agent.stop();
        p.store.close();
      }
    }
  }, 60_000);

  it('offers nothing for channels it does not hold or cannot win', () => {
    expect(latestFrom(undefined)).toBeNull();
  });
});
