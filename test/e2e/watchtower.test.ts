import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ChannelRecord } from '../../src/channel/record.ts';
import { deposit, readDispute, readHoldings, register, type Devnet } from '../../src/chain/index.ts';
import { MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { type Address, type Bytes32, ChannelKind, NATIVE_ASSET } from '../../src/model/types.ts';
import { ChannelStore } from '../../src/store/store.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { processNetwork, type ProcessNetwork, readChannel, WEI } from './fixture.ts';

// The gateway vanishes after a payer's run, and an old state of the payer's ledger
// channel is registered while the payer and its watchtower are offline. The tower,
// started afterwards as its own process on the payer's store, answers it with the newest
// state and, once the challenge period is over (anvil's clock moved forward), concludes
// the channel: the payer's balance lands at its address with no other step.

describe('when the gateway is gone: the watchtower and picopay close', () => {
  const network = processNetwork();
  let devnet: Devnet;
  let origin: ReturnType<ProcessNetwork['origin']>;
  beforeAll(() => {
    devnet = network.devnet();
    origin = network.origin();
  });

  /** A gateway, a hotspot and a payer as processes; the payer has downloaded, paid and settled its virtual channel. */
  async function afterAPaidRun() {
    const dir = tempDir('picopay-tower-');
    const { start, keystore } = network;
    await keystore(join(dir, 'gateway', 'key.json'));
    const chainArgs = network.chainArgs();
    const gatewayArgs = ['gateway', '--data-dir', join(dir, 'gateway'), ...chainArgs];
    const gateway = start('gateway', gatewayArgs);
    const gw = await gateway.next('ready');
    const reach = ['--gateway', gw.address as string, '--mqtt-url', gw.mqttUrl as string, ...chainArgs];
    const common = [...reach, '--deposit', WEI(10n ** 17n), '--gateway-deposit', WEI(10n ** 17n), '--price', WEI(10n ** 14n)];
    const owner = devnet.clients[7]!;
    const hotspot = start('hotspot', ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--allow-upstream', new URL(origin.url).host, ...common]);
    const hs = await hotspot.next('ledger');
    await deposit(owner, { channelId: hs.channel as Bytes32, asset: NATIVE_ASSET, amount: 10n ** 17n });
    const ready = await hotspot.next('ready');
    const payer = start('payer', ['device', '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', ready.address as string, '--proxy-url', ready.proxyUrl as string, '--download', `${origin.url}/bytes/300000`, '--lock', WEI(10n ** 16n), ...common]);
    const ledger = await payer.next('ledger');
    const payerDb = join(dir, 'payer', 'device.db');
    // The payer's ledger channel as it opened: version 0, both signatures.
    const opened = readChannel(payerDb, ledger.channel as Bytes32)!;
    expect(opened.current.state.version).toBe(0n);
    await deposit(owner, { channelId: opened.id, asset: NATIVE_ASSET, amount: 10n ** 17n });
    expect(await payer.exited()).toBe(0);
    const balanceOf = (a: Address): Promise<bigint> => devnet.deployer.publicClient.getBalance({ address: a });
    const restartGateway = async (): Promise<{ httpUrl: string }> => ({ httpUrl: (await start('gateway', gatewayArgs).next('ready')).httpUrl as string });
    return { dir, start, keystore, balanceOf, chainArgs, reach, gateway, restartGateway, hotspot, opened, payerDb, payerAddress: ledger.address as Address, hotspotAddress: hs.address as Address, hotspotDb: join(dir, 'hotspot', 'device.db') };
  }

  /** What `rec`'s side gets in its newest state. */
  const dueTo = (rec: ChannelRecord): bigint => rec.current.state.outcome.balances[0]![rec.idx];
  /** The contract clamps durations up to an hour at least. */
  const period = (rec: ChannelRecord): bigint => (rec.params.challengeDuration > MIN_CHALLENGE_DURATION ? rec.params.challengeDuration : MIN_CHALLENGE_DURATION);

  it('answers a stale registration made while it was down, then concludes and the device is paid', async () => {
    const net = await afterAPaidRun();
    const id = net.opened.id;
    const newest = readChannel(net.payerDb, id)!;
    expect(newest.current.state.version).toBeGreaterThan(0n);
    expect(dueTo(newest)).toBeLessThan(10n ** 17n); // it paid the hotspot and the gateway's fee

    // The gateway is gone; someone registers the old state; the payer and its tower are offline.
    await net.gateway.stop('SIGKILL');
    await net.hotspot.stop();
    const cheater = devnet.clients[8]!;
    await register(cheater, { params: net.opened.params, signed: net.opened.current });
    expect((await readDispute(cheater, id))?.version).toBe(0n);

    // The tower starts, watching the payer's store and the hotspot's (one tower, many devices), with a key of its own.
    const towerKey = await net.keystore(join(net.dir, 'tower.json'));
    const before = await net.balanceOf(net.payerAddress);
    const tower = net.start('tower', ['watchtower', '--store', `${net.hotspotDb},${net.payerDb}`, '--key', towerKey, '--confirmations', '1', '--sweep-interval-ms', '200', ...net.chainArgs]);
    expect((await tower.next('ready')).stores).toBe(2);
    await tower.next('answered');
    expect((await readDispute(cheater, id))?.version).toBe(newest.current.state.version);
    await devnet.increaseTime(period(net.opened) + 1n);
    await tower.next('concluded');
    expect((await readHoldings(cheater, id, NATIVE_ASSET)).concluded).toBe(true);
    expect(await net.balanceOf(net.payerAddress)).toBe(before + dueTo(newest));
  }, 300_000);

  it('picopay close: with the gateway at once; without it, on-chain alone after the period; each device paid exactly its due', async () => {
    const net = await afterAPaidRun();
    const gasKey = await net.keystore(join(net.dir, 'gas.json'));
    // The payer, its gateway online: a final state, closed on-chain at once.
    const payerDue = dueTo(readChannel(net.payerDb, net.opened.id)!);
    const payerBefore = await net.balanceOf(net.payerAddress);
    const cooperative = net.start('close-payer', ['close', '--data-dir', join(net.dir, 'payer'), '--gas-key', gasKey, ...net.reach]);
    expect((await cooperative.next('closed')).how).toBe('cooperative');
    expect(await net.balanceOf(net.payerAddress)).toBe(payerBefore + payerDue);
    // The hotspot, its gateway gone for good: registered, the period waited out, concluded.
    await net.gateway.stop('SIGKILL');
    await net.hotspot.stop();
    const hotspotLedger = readChannel(net.hotspotDb, readLedgerId(net.hotspotDb))!;
    const hotspotBefore = await net.balanceOf(net.hotspotAddress);
    const alone = net.start('close-hotspot', ['close', '--data-dir', join(net.dir, 'hotspot'), '--gas-key', gasKey, '--timeout', '2', ...net.reach]);
    await alone.next('registered');
    await devnet.increaseTime(period(hotspotLedger) + 1n);
    expect((await alone.next('closed')).how).toBe('on-chain');
    expect(await alone.exited()).toBe(0);
    expect(await net.balanceOf(net.hotspotAddress)).toBe(hotspotBefore + dueTo(hotspotLedger));
  }, 300_000);

  it('a device registers an old state while the gateway is down: the gateway, restarted, answers it', async () => {
    const net = await afterAPaidRun();
    const newest = readChannel(net.payerDb, net.opened.id)!;
    await net.gateway.stop('SIGKILL');
    const cheater = devnet.clients[9]!;
    await register(cheater, { params: net.opened.params, signed: net.opened.current });
    const { httpUrl } = await net.restartGateway();
    // Its chain duties read its channels' registrations at start: the stale one is refuted, and counted.
    await expect.poll(async () => (await readDispute(cheater, net.opened.id))?.version, { timeout: 20_000 }).toBe(newest.current.state.version);
    await expect.poll(async () => (await (await fetch(`${httpUrl}/metrics`)).text()).includes('picopay_disputes_refuted_total 1'), { timeout: 20_000 }).toBe(true);
  }, 300_000);
});

/** The device's ledger channel id. */
function readLedgerId(path: string): Bytes32 {
  const store = new ChannelStore(path);
  try {
    return store.loadChannels().find((c) => c.params.kind === ChannelKind.Ledger)!.id;
  } finally {
    store.close();
  }
}
