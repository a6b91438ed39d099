import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Signer } from '../../../crypto/keys.ts';
import { advertData, encodePrice, readAdvert } from './gatt.ts';

describe('the advertisement', () => {
  const address = Signer.random().address.toLowerCase() as `0x${string}`;

  it('carries the address and any price of the form m × 10^e exactly, in 24 bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 40 }), (m, e) => {
        const price = BigInt(m) * 10n ** BigInt(e);
        const data = advertData(address, price);
        expect(data.length).toBe(24);
        expect(readAdvert(data)).toEqual({ address, price });
      }),
    );
    expect(readAdvert(advertData(address, 10n ** 14n))).toEqual({ address, price: 10n ** 14n });
  });

  it('refuses a price it cannot carry exactly, and reads nothing from other data', () => {
    expect(encodePrice(65537n)).toBeNull();
    expect(() => advertData(address, 123_456_789n)).toThrow(RangeError);
    expect(readAdvert(new Uint8Array(21))).toBeNull();
    expect(readAdvert(undefined)).toBeNull();
    expect(readAdvert(new Uint8Array([2, ...advertData(address).subarray(1)]))).toBeNull();
  });
});
