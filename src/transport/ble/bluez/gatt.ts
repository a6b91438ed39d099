import type { Address } from '../../../model/types.ts';
import { fromHex, toHex } from '../../../model/hash.ts';

// The picopay GATT service, shared by the BlueZ peripheral and central. Three
// characteristics: RX (central → peripheral, write and write-without-response), TX
// (peripheral → central, notify) and LINK (read), which gives a central the one-byte tag
// that marks its notifications. BlueZ sends a D-Bus server's notifications to every
// subscribed central, so each TX packet starts with the tag of the link it belongs to.
//
// The advertisement carries the payee's picopay address as service data (a version byte,
// then the 20 bytes) under a 16-bit UUID, which fits the 31 bytes of a legacy advertisement
// (a 128-bit one would not; manufacturer data would, but dbus-next cannot send its
// integer-keyed dictionary), and its name in the scan response.

export const SERVICE_UUID = '8f3e0001-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
export const RX_UUID = '8f3e0002-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
export const TX_UUID = '8f3e0003-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
export const LINK_UUID = '8f3e0004-6b2a-4c1d-9e5f-0a1b2c3d4e5f';
/** 0xFFF3, unassigned: to be replaced by a member UUID from the Bluetooth SIG. */
export const ADVERT_UUID = '0000fff3-0000-1000-8000-00805f9b34fb';
const ADVERT_VERSION = 1;

/** The service data that names a payee. */
export function advertData(address: Address): Uint8Array {
  return new Uint8Array([ADVERT_VERSION, ...fromHex(address)]);
}

/** The address a payee's service data names, or null if it is not a picopay advert. */
export function advertAddress(data: Uint8Array | undefined): Address | null {
  if (!data || data.length !== 21 || data[0] !== ADVERT_VERSION) return null;
  return toHex(data.subarray(1)) as Address;
}

/** BlueZ's object path of a remote device on an adapter: /org/bluez/hci1/dev_00_AA_01_00_00_00. */
export function devicePath(adapter: string, mac: string): string {
  return `/org/bluez/${adapter}/dev_${mac.toUpperCase().replace(/:/g, '_')}`;
}
