import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PicopayProcess } from '../../demo/processes.ts';
import { startOrigin } from '../../device/hotspot/origin.ts';
import type { ChannelRecord } from '../../src/channel/record.ts';
import { deposit, readDispute, readHoldings, register, startDevnet, type Devnet } from '../../src/chain/index.ts';
import { writeKeystore } from '../../src/crypto/keystore.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { type Address, type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { ChannelStore } from '../../src/store/store.ts';
import { tempDir } from '../../src/testing/agents.ts';

// The gateway vanishes after a payer's run, and an old state of the payer's ledger
// channel is registered while the payer and its watchtower are offline. The tower,
// started afterwards as its own process on the payer's store, answers it with the newest
// state and, once the challenge period is over (anvil's clock moved forward), concludes
// the channel: the payer's balance lands at its address with no other step.

const env = { PICOPAY_LOG: 'warn', PICOPAY_PASSWORD: '' };
const WEI = (n: bigint): string => `${n}wei`;

describe('a watchtower that was down', () => {
  let devnet: Devnet;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  const procs: PicopayProcess[] = [];
  beforeAll(async () => {
    devnet = await startDevnet();
    origin = await startOrigin();
  }, 60_000);
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await origin?.close();
    await devnet?.stop();
  });

  it('answers a stale registration made while it was down, then concludes and the device is paid', async () => {
    const dir = tempDir('picopay-tower-');
    const fund = async (to: Address): Promise<void> => {
      await devnet.deployer.publicClient.waitForTransactionReceipt({ hash: await devnet.deployer.walletClient.sendTransaction({ to, value: 10n ** 20n }) });
    };
    const gatewayKey = Signer.random();
    writeKeystore(join(dir, 'gateway', 'key.json'), gatewayKey, '', { scryptN: 1 << 10 });
    await fund(gatewayKey.address);
    const start = (name: string, args: string[]): PicopayProcess => {
      const p = new PicopayProcess(name, args, { env });
      procs.push(p);
      return p;
    };
    const chainArgs = ['--rpc-url', devnet.anvil.rpcUrl, '--chain-id', String(devnet.anvil.chainId), '--adjudicator', devnet.deployer.adjudicator];
    const gateway = start('gateway', ['gateway', '--data-dir', join(dir, 'gateway'), ...chainArgs]);
    const gw = await gateway.next('ready');
    const common = ['--gateway', gw.address as string, '--mqtt-url', gw.mqttUrl as string, ...chainArgs, '--deposit', WEI(10n ** 17n), '--gateway-deposit', WEI(10n ** 17n), '--price', WEI(10n ** 14n)];
    const owner = devnet.clients[7]!;
    const hotspot = start('hotspot', ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--allow-upstream', new URL(origin.url).host, ...common]);
    const hs = await hotspot.next('ledger');
    await deposit(owner, { channelId: hs.channel as Bytes32, asset: NATIVE_ASSET, amount: 10n ** 17n });
    const ready = await hotspot.next('ready');
    const payerDb = join(dir, 'payer', 'device.db');
    const payer = start('payer', ['device', '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', ready.address as string, '--proxy-url', ready.proxyUrl as string, '--download', `${origin.url}/bytes/300000`, '--lock', WEI(10n ** 16n), ...common]);
    const ledger = await payer.next('ledger');
    const id = ledger.channel as Bytes32;
    // The payer's ledger channel as it opened: version 0, both signatures. It is what gets registered later.
    const opened = readChannel(payerDb, id);
    expect(opened.current.state.version).toBe(0n);
    await deposit(owner, { channelId: id, asset: NATIVE_ASSET, amount: 10n ** 17n });
    expect(await payer.exited()).toBe(0);
    const newest = readChannel(payerDb, id);
    expect(newest.current.state.version).toBeGreaterThan(0n);
    const payerAddress = ledger.address as Address;
    const due = newest.current.state.outcome.balances[0]![newest.idx];
    expect(due).toBeLessThan(10n ** 17n); // it paid the hotspot and the gateway's fee

    // The gateway is gone; someone registers the old state; the payer and its tower are offline.
    await gateway.stop('SIGKILL');
    await hotspot.stop();
    const cheater = devnet.clients[8]!;
    await register(cheater, { params: opened.params, signed: opened.current });
    expect((await readDispute(cheater, id))?.version).toBe(0n);

    // The tower starts, on the payer's store, with a key of its own.
    const towerKey = Signer.random();
    writeKeystore(join(dir, 'tower.json'), towerKey, '', { scryptN: 1 << 10 });
    await fund(towerKey.address);
    const before = await devnet.deployer.publicClient.getBalance({ address: payerAddress });
    const tower = start('tower', ['watchtower', '--store', payerDb, '--key', join(dir, 'tower.json'), '--confirmations', '1', '--sweep-interval-ms', '200', ...chainArgs]);
    await tower.next('answered');
    expect((await readDispute(cheater, id))?.version).toBe(newest.current.state.version);
    // The contract clamps durations up to an hour at least.
    await devnet.increaseTime((opened.params.challengeDuration > MIN_CHALLENGE_DURATION ? opened.params.challengeDuration : MIN_CHALLENGE_DURATION) + 1n);
    await tower.next('concluded');
    expect((await readHoldings(cheater, id, NATIVE_ASSET)).concluded).toBe(true);
    expect(await devnet.deployer.publicClient.getBalance({ address: payerAddress })).toBe(before + due);
  }, 300_000);
});

/** A channel as the device's store holds it (the device may be running: SQLite lets a reader in). */
function readChannel(path: string, id: Bytes32): ChannelRecord {
  const store = new ChannelStore(path);
  try {
    return store.loadChannel(id)!;
  } finally {
    store.close();
  }
}
