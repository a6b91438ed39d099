import type { Address } from '../../../model/types.ts';
import { fromHex, toHex } from '../../../model/hash.ts';

// The picopay GATT service, shared by the BlueZ peripheral and central. Three
// characteristics: RX (central → peripheral, write and write-without-response), TX
// (peripheral → central, notify) and LINK (read), which gives a central the one-byte tag
// that marks its notifications. BlueZ sends a D-Bus server's notifications to every
// subscribed central, so each TX packet starts with the tag of the link it belongs to.
//
// The advertisement carries the payee's picopay address and price as service data (a
// version byte, the 20 bytes, the price in 3) under a 16-bit UUID, which fits the 31 bytes of a legacy advertisement
// (a 128-bit one would not; manufacturer data would, but dbus-next cannot send its
// integer-keyed dictionary), and its name in the scan response.

export const SERVICE_UUID = '8f3e0001-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
export const RX_UUID = '8f3e0002-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
export const TX_UUID = '8f3e0003-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
export const LINK_UUID = '8f3e0004-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
/** 0xFFF3, unassigned: to be replaced by a member UUID from the Bluetooth SIG. */
export const ADVERT_UUID = '0000fff3-0000-1000-8000-00805f9b34fb';
const ADVERT_VERSION = 1;

/**
 * The price of one payment in 3 bytes, m × 10^e wei (e one byte, m two): the 31 bytes of
 * an advertisement have room for no more. Null when the price has no such exact form.
 */
export function encodePrice(wei: bigint): Uint8Array | null {
  for (let e = 0, m = wei; e < 256; e++, m /= 10n) {
    if (m < 65536n) return new Uint8Array([e, Number(m >> 8n), Number(m & 0xffn)]);
    if (m % 10n !== 0n) return null;
  }
  return null;
}

/** The service data that names a payee and what it asks per payment. */
export function advertData(address: Address, price = 0n): Uint8Array {
  const encoded = encodePrice(price);
  if (!encoded) throw new RangeError(`a price of ${price} wei has no exact form m × 10^e with m < 65536`);
  return new Uint8Array([ADVERT_VERSION, ...fromHex(address), ...encoded]);
}

/** What a payee's service data says, or null if it is not a picopay advert. The price is its claim. */
export function readAdvert(data: Uint8Array | undefined): { address: Address; price: bigint } | null {
  if (!data || data.length !== 24 || data[0] !== ADVERT_VERSION) return null;
  const [e, hi, lo] = [data[21]!, data[22]!, data[23]!];
  return { address: toHex(data.subarray(1, 21)) as Address, price: BigInt((hi << 8) | lo) * 10n ** BigInt(e) };
}

/** BlueZ's object path of a remote device on an adapter: /org/bluez/hci1/dev_00_AA_01_00_00_00. */
export function devicePath(adapter: string, mac: string): string {
  return `/org/bluez/${adapter}/dev_${mac.toUpperCase().replace(/:/g, '_')}`;
}
