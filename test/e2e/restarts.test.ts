import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PicopayProcess } from '../../demo/processes.ts';
import { bundleDevice, DEVICE_BUNDLE } from '../../device/bundle.ts';
import { pseudoRandomSha256 } from '../../device/hotspot/origin.ts';
import { deposit, readHoldings } from '../../src/chain/index.ts';
import { type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { freePort, waitFor } from '../transport/helpers.ts';
import { processNetwork, readChannel, WEI } from './fixture.ts';

// Parties killed mid-download (SIGKILL, as separate processes on a real chain), each
// restarted with the same command on the same data directory: a payer goes on in the
// virtual channel it had paid from; a payer whose hotspot is killed goes on from the byte
// it reached once the hotspot is back, and the hotspot is paid its highest voucher although
// its store had none of them (they were within its group-commit window). The devices run
// from the lean bundle (device/bundle.ts), as on a Pi-class board.

const UNIT = 102_400;
const PRICE = 10n ** 14n;
const SIZE = 8 * UNIT + 321;

describe('parties killed mid-download', () => {
  const net = processNetwork();
  // In the project (dist/), where its native modules resolve from node_modules.
  const bundle = DEVICE_BUNDLE;
  beforeAll(() => bundleDevice(bundle), 60_000);
  // The bundle is `picopay device` alone: it takes the options without the command's name.
  const device = (name: string, args: string[]) => net.start(name, args.slice(1), bundle);

  it('a killed payer goes on in the channel it paid from; with its hotspot killed it goes on from the byte it reached; the hotspot gets every voucher back', async () => {
    const dir = tempDir('picopay-restarts-');
    const { start } = net;
    const devnet = net.devnet();
    const origin = net.origin();
    await net.keystore(join(dir, 'gateway', 'key.json'));
    const gateway = start('gateway', ['gateway', '--data-dir', join(dir, 'gateway'), ...net.chainArgs()]);
    const gw = await gateway.next('ready');
    const common = ['--gateway', gw.address as string, '--mqtt-url', gw.mqttUrl as string, '--chain-id', String(gw.chainId), '--adjudicator', gw.adjudicator as string, '--rpc-url', devnet.anvil.rpcUrl, '--deposit', WEI(10n ** 17n), '--gateway-deposit', WEI(10n ** 17n), '--price', WEI(PRICE)];
    const owner = devnet.clients[6]!;
    const funded = async (p: PicopayProcess): Promise<Bytes32> => {
      const ledger = (await p.next('ledger')).channel as Bytes32;
      const holdings = await readHoldings(owner, ledger, NATIVE_ASSET);
      if (holdings.amount === 0n) await deposit(owner, { channelId: ledger, asset: NATIVE_ASSET, amount: 10n ** 17n });
      return ledger;
    };
    const proxyPort = await freePort();
    const hotspotArgs = ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--proxy-port', String(proxyPort), '--allow-upstream', new URL(origin.url).host, ...common];
    let hotspot = device('hotspot', hotspotArgs);
    const hotspotLedger = await funded(hotspot);
    const ready = await hotspot.next('ready');
    const hotspotDb = join(dir, 'hotspot', 'device.db');
    const payerDb = join(dir, 'payer', 'device.db');
    const earned = () => {
      const ledger = readChannel(hotspotDb, hotspotLedger)!;
      return ledger.current.state.outcome.balances[0]![ledger.idx];
    };
    const before = earned();
    const url = `${origin.url}/bytes/${SIZE}`;
    const payer = () => device('payer', ['device', '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', ready.address as string, '--proxy-url', ready.proxyUrl as string, '--download', url, '--lock', WEI(10n ** 16n), ...common]);
    const paidIn = (channel: Bytes32) => () => readChannel(payerDb, channel)?.voucher?.cumulative ?? 0n;

    // 1. The payer is killed with its download held half-way, having paid for 3 units.
    let hold = origin.hold(4 * UNIT);
    const first = payer();
    await funded(first);
    const channel = (await first.next('virtual')).channel as Bytes32;
    await waitFor(() => paidIn(channel)() >= 3n * PRICE, 'the first payer paid 3 units', 60_000);
    await first.stop('SIGKILL');
    hold.release();
    const paidBefore = paidIn(channel)();

    const again = payer();
    const resumed = await again.next('resumed');
    expect(resumed.channel).toBe(channel);
    expect(BigInt(resumed.paid as string)).toBe(paidBefore);
    const downloaded = await again.next('downloaded');
    expect(downloaded).toMatchObject({ bytes: SIZE, sha256: pseudoRandomSha256(SIZE) });
    const settled = await again.next('settled');
    expect(settled.channel).toBe(channel);
    expect(await again.exited()).toBe(0);
    // It paid the whole download again from where it stood, and one unit ahead: nothing more.
    const paidOne = BigInt(settled.paid as string);
    expect(paidOne - paidBefore).toBeLessThanOrEqual(BigInt(Math.ceil(SIZE / UNIT) + 1) * PRICE);
    expect(again.events.some((e) => e.event === 'virtual')).toBe(false);

    // 2. The hotspot is killed with the download held half-way; the payer waits for it.
    hold = origin.hold(5 * UNIT);
    const third = payer();
    const second = (await third.next('virtual')).channel as Bytes32;
    await waitFor(() => paidIn(second)() >= 4n * PRICE, 'the third payer paid 4 units', 60_000);
    await hotspot.stop('SIGKILL');
    hold.release();
    // Every voucher of it was within the hotspot's group-commit window (10 units): its store has none.
    expect(readChannel(hotspotDb, second)?.voucher?.cumulative ?? 0n).toBe(0n);
    hotspot = device('hotspot', hotspotArgs);
    await hotspot.next('ready');
    const done = await third.next('downloaded');
    expect(done).toMatchObject({ bytes: SIZE, sha256: pseudoRandomSha256(SIZE) });
    const paidTwo = BigInt((await third.next('settled')).paid as string);
    expect(await third.exited()).toBe(0);
    // The hotspot settled at the payer's highest voucher, and the payer paid for each byte once, with one unit re-bought.
    expect(BigInt((await hotspot.next('settled')).paid as string)).toBe(paidTwo);
    expect(paidTwo).toBeLessThanOrEqual(BigInt(Math.ceil(SIZE / UNIT) + 2) * PRICE);
    expect(earned() - before).toBe(paidOne + paidTwo);
  }, 300_000);
});
