import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { bundleDevice } from '../../device/bundle.ts';
import { deposit, readHoldings } from '../../src/chain/index.ts';
import { type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { processNetwork, readChannel } from '../e2e/fixture.ts';
import { freePort, waitFor } from '../transport/helpers.ts';
import { guestFolder, killGuests, runGuest, vmMissing } from './vm.ts';

// Two devices pay each other near-field while their gateway is gone. The gateway and the
// chain run on the host; the two device agents run in the qemu guest, on BlueZ, and reach
// the host's broker and chain through qemu's user network (10.0.2.2). The channel is opened
// through the gateway while it is up; the gateway (and its embedded broker) is killed; the
// payer pays 100 times over BLE, the payee is killed half-way and started again and pays
// 100 times back; the gateway comes back, the channel settles, and every store agrees.

const missing = vmMissing();
if (missing && process.env.CI) throw new Error(`the BLE guest cannot run in CI: ${missing}`);
afterEach(killGuests);

const DEPOSIT = 10n ** 17n;
const LOCK = 10n ** 16n;
const PRICE = { payer: 10n ** 13n, payee: 4n * 10n ** 12n };
const COUNT = 100;

describe.skipIf(missing !== null)('near-field payments with the gateway gone', () => {
  const net = processNetwork();

  it('pays 100 times each way over BLE through a payee restart, and settles once the gateway is back', async () => {
    const out = guestFolder();
    const bundle = join(import.meta.dirname, '..', '..', 'dist', 'ble-near-check.mjs');
    await bundleDevice(bundle, join(import.meta.dirname, 'near-check.ts'));
    writeFileSync(join(out, 'near-check.mjs'), `import ${JSON.stringify(bundle)};\n`);
    const dir = tempDir('picopay-near-');
    const devnet = net.devnet();
    await net.keystore(join(dir, 'gateway', 'key.json'));
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    const gatewayArgs = ['gateway', '--data-dir', join(dir, 'gateway'), '--mqtt-port', String(mqttPort), '--mqtt-names', `10.0.2.2:${mqttPort}`, '--http-port', String(httpPort), ...net.chainArgs()];
    let gateway = net.start('gateway', gatewayArgs);
    const gw = await gateway.next('ready');
    const guestHost = (url: string) => url.replace('127.0.0.1', '10.0.2.2');
    writeFileSync(
      join(out, 'config.json'),
      JSON.stringify({
        gateway: gw.address,
        mqttUrl: guestHost(gw.mqttUrl as string),
        rpcUrl: guestHost(devnet.anvil.rpcUrl),
        chainId: String(gw.chainId),
        adjudicator: gw.adjudicator,
        deposit: String(DEPOSIT),
        lock: String(LOCK),
        price: { payer: String(PRICE.payer), payee: String(PRICE.payee) },
      }),
    );
    const guest = runGuest('guest-near.sh', out, 14 * 60_000, {});
    let guestDone = false;
    void guest.finally(() => (guestDone = true));
    const marker = (name: string) => () => guestDone || existsSync(join(out, name));
    const read = (name: string) => JSON.parse(readFileSync(join(out, name), 'utf8'));

    // The owners fund each device's side of its ledger channel.
    const owner = devnet.clients[6]!;
    const ledgers: Record<string, Bytes32> = {};
    for (const role of ['payee', 'payer']) {
      await waitFor(marker(`${role}.ledger`), `the ${role}'s ledger channel`, 8 * 60_000);
      if (guestDone) break;
      ledgers[role] = read(`${role}.ledger`).ledger;
      if ((await readHoldings(owner, ledgers[role]!, NATIVE_ASSET)).amount === 0n) await deposit(owner, { channelId: ledgers[role]!, asset: NATIVE_ASSET, amount: DEPOSIT });
    }
    // The channel is open: the gateway and its broker go.
    await waitFor(marker('payer.vc'), 'the virtual channel', 8 * 60_000);
    await gateway.stop('SIGKILL');
    writeFileSync(join(out, 'gateway-down'), '');
    // Every payment both ways made: the gateway comes back on the same ports and data.
    await waitFor(marker('payer.paid'), 'the payments both ways', 10 * 60_000);
    gateway = net.start('gateway', gatewayArgs);
    await gateway.next('ready');
    writeFileSync(join(out, 'gateway-up'), '');

    const run = await guest;
    expect(run.code, run.console.slice(-8000)).toBe(0);
    const payer = read('payer.result');
    const payee = read('payee.result');
    const net100 = BigInt(COUNT) * (PRICE.payer - PRICE.payee);
    // Both devices hold the same final state of the channel, with every payment in it.
    expect(payer.vc).toEqual(payee.vc);
    expect(payer.final && payee.final).toBe(true);
    expect(payer.vc.map(BigInt)).toEqual([LOCK - net100, LOCK + net100]);
    // And each ledger channel took its side back: the gateway's store agrees with the device's.
    expect(BigInt(payer.ledger[payer.idx])).toBe(DEPOSIT - net100);
    expect(BigInt(payee.ledger[payee.idx])).toBe(DEPOSIT + net100);
    expect([payer.ledgerLocked, payee.ledgerLocked]).toEqual([0, 0]);
    const gatewayDb = join(dir, 'gateway', 'gateway.db');
    for (const [role, result] of [['payer', payer], ['payee', payee]] as const) {
      await waitFor(() => readChannel(gatewayDb, ledgers[role]!)?.current.state.outcome.locked.length === 0, `the gateway's view of the ${role}'s ledger`, 60_000);
      expect(readChannel(gatewayDb, ledgers[role]!)!.current.state.outcome.balances[0]!.map(String)).toEqual(result.ledger);
    }
    expect(read('payer.paid').ble.refusedLinks).toBe(0);
  }, 15 * 60_000);
});
