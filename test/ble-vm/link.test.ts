import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundleDevice } from '../../device/bundle.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { toHex } from '../../src/model/hash.ts';
import { guestFolder, guestTests, runGuest } from './vm.ts';

// The BLE transport on the real Linux Bluetooth stack: the kernel's, BlueZ 5.66's
// bluetoothd, two btvirt LE controllers, in a qemu guest. A payee (BlueZ D-Bus GATT server
// and advertisement) and a payer (node-ble) run from a bundle as separate processes. In CI
// a guest that cannot boot fails the test (.ci/run installs qemu and builds the cache).

const missing = guestTests();

describe.skipIf(missing !== null)('BLE link on BlueZ in the guest', () => {
  it('binds, pays 100 times with one packet each, survives a payee restart and pays 100 more, then a payer killed and restarted', async () => {
    const out = guestFolder();
    const bundle = join(import.meta.dirname, '..', '..', 'dist', 'ble-link-check.mjs');
    await bundleDevice(bundle, join(import.meta.dirname, 'link-check.ts'));
    writeFileSync(join(out, 'link-check.mjs'), `import ${JSON.stringify(bundle)};\n`);
    const payee = Signer.random();
    const payer = Signer.random();
    writeFileSync(join(out, 'payee.key'), toHex(payee.exportPrivateKey()), { mode: 0o600 });
    writeFileSync(join(out, 'payer.key'), toHex(payer.exportPrivateKey()), { mode: 0o600 });
    writeFileSync(join(out, 'payee.address'), payee.address);
    const run = await runGuest('guest-link.sh', out, 8 * 60_000, {});
    expect(run.code, run.console.slice(-6000)).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'payer.json'), 'utf8'));
    expect(result.sightings.map((s: { address: string; name: string }) => [s.address, s.name])).toContainEqual([payee.address.toLowerCase(), 'kiosk']);
    expect(result.mtu).toBeGreaterThanOrEqual(247);
    expect(result.phase1).toBe(100);
    expect(result.acked).toBe(200);
    expect(result.down).toBeGreaterThanOrEqual(1);
    expect(result.up).toBeGreaterThanOrEqual(2);
    // The payer's side restarted too: a new process, with its predecessor killed half-way, linked and paid 40 times.
    expect(JSON.parse(readFileSync(join(out, 'again.json'), 'utf8')).acked).toBe(40);
  }, 9 * 60_000);
});
