import { describe, expect, it } from 'vitest';
import { Signer } from '../../src/crypto/keys.ts';
import { TariffRefusedError } from './errors.ts';
import { createTariff } from './meter.ts';
import { acceptTariff, signTariff } from './tariff.ts';

const hotspot = Signer.random();
const mallory = Signer.random();
const tariff = createTariff({ unitBytes: 102_400, pricePerUnit: 10n ** 14n });
const signed = signTariff(hotspot.address, tariff, (d) => hotspot.sign(d));
const limit = { maxPrice: 10n ** 14n, unitBytes: 102_400 };

describe('the signed tariff', () => {
  it('is accepted from its hotspot within the payer\'s limit, whatever unit each side counts in', () => {
    expect(acceptTariff(signed, hotspot.address, limit)).toEqual(tariff);
    expect(acceptTariff(JSON.parse(JSON.stringify(signed)), hotspot.address, { maxPrice: 2n * 10n ** 14n, unitBytes: 204_800 })).toEqual(tariff);
  });

  it('is refused when another key signed it, when it was altered, or when it is not a tariff', () => {
    const forged = signTariff(hotspot.address, tariff, (d) => mallory.sign(d));
    for (const body of [forged, { ...signed, price: '1' }, { ...signed, unitBytes: 1_000_000 }, { ...signed, prepaidUnits: 5 }, { ...signed, sig: '0x12' }, null, 'tariff', { ...signed, price: '-1' }]) {
      expect(() => acceptTariff(body, hotspot.address, limit)).toThrow(TariffRefusedError);
    }
    // A tariff the hotspot signed, served as another hotspot's.
    expect(() => acceptTariff(signed, mallory.address, limit)).toThrow(/not signed by the hotspot/);
  });

  it('above the payer\'s limit it is refused with one line that names both prices', () => {
    expect(() => acceptTariff(signed, hotspot.address, { maxPrice: 5n * 10n ** 13n, unitBytes: 102_400 })).toThrow(/asks 0\.0001 ETH per 102400 bytes, above this payer's limit of 0\.00005 ETH per 102400 bytes/);
    expect(() => acceptTariff(signed, hotspot.address, { maxPrice: 10n ** 14n - 1n, unitBytes: 102_400 })).toThrow(TariffRefusedError);
    expect(() => acceptTariff(signed, hotspot.address, { maxPrice: 10n ** 14n, unitBytes: 204_801 })).toThrow(TariffRefusedError);
  });

  it('that wants more paid ahead than one of the payer\'s units is refused, however cheap', () => {
    const greedy = signTariff(hotspot.address, createTariff({ unitBytes: 1024, pricePerUnit: 1n, prepaidUnits: 100_000 }), (d) => hotspot.sign(d));
    expect(() => acceptTariff(greedy, hotspot.address, limit)).toThrow(/bytes paid ahead/);
    const huge = signTariff(hotspot.address, createTariff({ unitBytes: 100 * 102_400, pricePerUnit: 100n * 10n ** 14n }), (d) => hotspot.sign(d));
    expect(() => acceptTariff(huge, hotspot.address, limit)).toThrow(/bytes paid ahead/);
  });
});
