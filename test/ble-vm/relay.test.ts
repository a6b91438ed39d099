import { afterEach, describe, it } from 'vitest';
import { processNetwork } from '../e2e/fixture.ts';
import { COUNT, expectSettled, PRICE, startScenario } from './scenario.ts';
import { killGuests, vmMissing } from './vm.ts';

// A device with no internet (no broker URL, no chain RPC) opens a ledger channel with its
// gateway, a virtual channel with a payee and settles it, every frame for the gateway
// sealed and passed on by that payee between BLE and MQTT (src/transport/relay.ts).

const missing = vmMissing();
if (missing && process.env.CI) throw new Error(`the BLE guest cannot run in CI: ${missing}`);
afterEach(killGuests);

describe.skipIf(missing !== null)('a device with no internet, relayed by its peer', () => {
  const net = processNetwork();

  it('opens, pays 100 times and settles through the payee that relays its frames to the gateway', async () => {
    const s = await startScenario(net, 'guest-relay.sh', true);
    await expectSettled(s, BigInt(COUNT) * PRICE.payer);
  }, 15 * 60_000);
});
