import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { AllowanceExceededError } from './errors.ts';
import { createTariff, Meter, unitsDue } from './meter.ts';

const tariffs = fc.record({
  unitBytes: fc.integer({ min: 1, max: 4096 }),
  pricePerUnit: fc.bigInt({ min: 1n, max: 10n ** 15n }),
  prepaidUnits: fc.integer({ min: 1, max: 4 }),
});

describe('Meter', () => {
  it('serves nothing before a payment, then exactly the units paid for', () => {
    const meter = new Meter(createTariff({ unitBytes: 100, pricePerUnit: 7n }));
    expect(meter.allowance()).toBe(0);
    expect(() => meter.consume(1)).toThrow(AllowanceExceededError);
    expect(meter.credit(20n)).toBe(true); // 2 units, 6 wei towards a third buy nothing
    expect(meter.allowance()).toBe(200);
    meter.consume(150);
    expect(meter.allowance()).toBe(50);
    expect(meter.credit(13n)).toBe(false); // an older voucher arriving late
    expect(meter.credit(21n)).toBe(true);
    expect(meter.allowance()).toBe(150);
  });

  it('refuses invalid tariffs', () => {
    expect(() => createTariff({ unitBytes: 0, pricePerUnit: 1n })).toThrow(ConfigError);
    expect(() => createTariff({ pricePerUnit: 0n })).toThrow(ConfigError);
    expect(() => createTariff({ pricePerUnit: 1n, prepaidUnits: 0 })).toThrow(ConfigError);
    expect(createTariff({ pricePerUnit: 1n })).toEqual({ unitBytes: 102_400, pricePerUnit: 1n, prepaidUnits: 1 });
  });

  it('never serves beyond what is paid, whatever the order of credits and consumption', () => {
    const step = fc.oneof(
      fc.record({ credit: fc.bigInt({ min: 0n, max: 10n ** 18n }) }),
      fc.record({ consume: fc.integer({ min: 0, max: 1 << 20 }) }),
    );
    fc.assert(
      fc.property(tariffs, fc.array(step, { maxLength: 60 }), (tariff, steps) => {
        const meter = new Meter(tariff);
        let highest = 0n;
        for (const s of steps) {
          if ('credit' in s) {
            const unitsBefore = meter.unitsPaid;
            const bought = meter.credit(s.credit);
            highest = s.credit > highest ? s.credit : highest;
            expect(bought).toBe(meter.unitsPaid > unitsBefore);
          } else {
            const before = { served: meter.bytesServed, allowance: meter.allowance() };
            if (s.consume <= before.allowance) meter.consume(s.consume);
            else expect(() => meter.consume(s.consume)).toThrow(AllowanceExceededError);
            // Refused consumption changes nothing; accepted consumption moves both by n.
            const n = s.consume <= before.allowance ? s.consume : 0;
            expect(meter.bytesServed).toBe(before.served + n);
          }
          // In bigint: with a tiny price, paid-for bytes may exceed 2^53 (allowance saturates there).
          const paidBytes = (highest / tariff.pricePerUnit) * BigInt(tariff.unitBytes);
          const left = paidBytes - BigInt(meter.bytesServed);
          expect(meter.paid).toBe(highest);
          expect(left >= 0n).toBe(true);
          expect(meter.allowance()).toBe(Number(left > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : left));
        }
      }),
    );
  });
});

/**
 * The client and the hotspot together: the hotspot forwards chunks as far as its Meter
 * allows; the client pays unitsDue(bytes received) after every chunk, until it stops
 * after `payments` vouchers (or never stops). Payments arrive at once.
 */
function simulate(tariff: ReturnType<typeof createTariff>, chunks: number[], payments: number | undefined) {
  const meter = new Meter(tariff);
  let received = 0;
  let unitsPaid = 0;
  let vouchers = 0;
  let receivedAtLastVoucher = 0;
  let maxAhead = 0;
  const pay = () => {
    const due = unitsDue(tariff, received);
    if (due <= unitsPaid || (payments !== undefined && vouchers >= payments)) return;
    unitsPaid = due;
    vouchers++;
    receivedAtLastVoucher = received;
    meter.credit(BigInt(unitsPaid) * tariff.pricePerUnit);
    maxAhead = Math.max(maxAhead, unitsPaid * tariff.unitBytes - received);
  };
  pay();
  for (let chunk of chunks) {
    while (chunk > 0) {
      const n = Math.min(chunk, meter.allowance());
      if (n === 0) return { meter, received, unitsPaid, receivedAtLastVoucher, maxAhead, complete: false };
      meter.consume(n);
      received += n;
      chunk -= n;
      pay();
    }
  }
  return { meter, received, unitsPaid, receivedAtLastVoucher, maxAhead, complete: true };
}

describe('client paying unitsDue against the Meter', () => {
  const chunks = fc.array(fc.integer({ min: 1, max: 20_000 }), { maxLength: 40 });

  it('a client that keeps paying gets every byte, paying every started unit and at most prepaidUnits ahead', () => {
    fc.assert(
      fc.property(tariffs, chunks, (tariff, sizes) => {
        const total = sizes.reduce((a, b) => a + b, 0);
        const run = simulate(tariff, sizes, undefined);
        expect(run.complete).toBe(true);
        expect(run.received).toBe(total);
        // Paid for more than it used, by at most prepaidUnits units at any time.
        expect(run.maxAhead).toBeLessThanOrEqual(tariff.prepaidUnits * tariff.unitBytes);
        expect(run.unitsPaid * tariff.unitBytes).toBeGreaterThan(total);
        expect(run.unitsPaid).toBe(Math.floor(total / tariff.unitBytes) + tariff.prepaidUnits);
      }),
    );
  });

  it('a client that stops paying gets only what it paid for: at most prepaidUnits units after its last voucher', () => {
    fc.assert(
      fc.property(tariffs, chunks, fc.nat({ max: 30 }), (tariff, sizes, payments) => {
        const total = sizes.reduce((a, b) => a + b, 0);
        const run = simulate(tariff, sizes, payments);
        const paidBytes = run.unitsPaid * tariff.unitBytes;
        expect(run.received).toBeLessThanOrEqual(paidBytes);
        expect(run.received - run.receivedAtLastVoucher).toBeLessThanOrEqual(tariff.prepaidUnits * tariff.unitBytes);
        // The hotspot stops exactly where the payments stop, not earlier.
        if (!run.complete) expect(run.received).toBe(paidBytes);
        else expect(run.received).toBe(total);
      }),
    );
  });
});
