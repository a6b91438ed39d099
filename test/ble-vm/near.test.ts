import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { processNetwork } from '../e2e/fixture.ts';
import { waitFor } from '../transport/helpers.ts';
import { COUNT, expectSettled, PRICE, startScenario } from './scenario.ts';
import { guestTests } from './vm.ts';

// Two devices pay each other near-field while their gateway is gone. The gateway and the
// chain run on the host; the two device agents run in the qemu guest, on BlueZ, and reach
// the host's broker and chain through qemu's user network (10.0.2.2). The channel is opened
// through the gateway while it is up; the gateway (and its embedded broker) is killed; the
// payer pays 100 times over BLE, the payee is killed half-way and started again and pays
// 100 times back, and the payer sends 100 vouchers in a stream beside; the gateway comes
// back, both channels settle, and every store agrees.

const missing = guestTests();

describe.skipIf(missing !== null)('near-field payments with the gateway gone', () => {
  const net = processNetwork();

  it('pays 100 times each way and 100 vouchers over BLE through a payee restart, and settles once the gateway is back', async () => {
    const s = await startScenario(net, 'guest-near.sh');
    await waitFor(s.marker('payer.vc'), 'the virtual channel', 8 * 60_000);
    await s.stopGateway();
    writeFileSync(join(s.out, 'gateway-down'), '');
    await waitFor(s.marker('payer.paid'), 'the payments both ways', 10 * 60_000);
    await s.startGateway();
    writeFileSync(join(s.out, 'gateway-up'), '');
    await expectSettled(s, BigInt(COUNT) * (PRICE.payer - PRICE.payee), BigInt(COUNT) * PRICE.payer);
    expect(s.read('payer.paid').ble.refusedLinks).toBe(0);
  }, 15 * 60_000);
});
