import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { processNetwork, readChannel } from '../e2e/fixture.ts';
import { waitFor } from '../transport/helpers.ts';
import { COUNT, DEPOSIT, PRICE, startScenario } from './scenario.ts';
import { guestTests } from './vm.ts';

// The near-field CLI from the lean bundle, on BlueZ in the guest: a payee that relays
// (`picopay device --role payee --relay`), `picopay nearby`, and a payer with no internet
// (no broker, no chain RPC: `--near … --no-internet`) that opens its ledger channel and a
// virtual channel, pays 100 times over BLE and settles, every frame for the gateway sealed
// and passed on by the payee between BLE and MQTT (src/transport/relay.ts).

const missing = guestTests();

describe.skipIf(missing !== null)('the near-field CLI, with a payer that has no internet', () => {
  const net = processNetwork();

  it('nearby lists the payee; the payer opens, pays 100 times and settles through the payee’s relay', async () => {
    const s = await startScenario(net, 'guest-cli.sh');
    const run = await s.guest;
    expect(run.code, run.console.slice(-8000)).toBe(0);
    const lines = (name: string) =>
      readFileSync(join(s.out, name), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    const payee = s.read('payee.ledger').address;
    expect(lines('nearby.out')).toContainEqual(expect.objectContaining({ event: 'payee', address: payee.toLowerCase(), name: 'kiosk', price: String(PRICE.payer) }));
    const paid = BigInt(COUNT) * PRICE.payer;
    expect(lines('payer.out').find((l) => l.event === 'settled')).toMatchObject({ paid: String(paid) });
    const earned = lines('payee.out').filter((l) => l.event === 'paid');
    expect(earned).toHaveLength(COUNT);
    expect(earned.at(-1)).toMatchObject({ earned: String(paid) });
    // The gateway's store: each ledger channel took its side back, nothing locked.
    for (const [role, balance] of [['payer', DEPOSIT - paid], ['payee', DEPOSIT + paid]] as const) {
      await waitFor(() => readChannel(s.gatewayDb, s.ledgers[role])?.current.state.outcome.locked.length === 0, `the gateway's view of the ${role}'s ledger`, 60_000);
      const ledger = readChannel(s.gatewayDb, s.ledgers[role])!;
      expect(ledger.current.state.outcome.balances[0]![1 - ledger.idx]).toBe(balance);
    }
  }, 15 * 60_000);
});
