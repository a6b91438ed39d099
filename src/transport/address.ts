import type { Address } from '../model/types.ts';

/** An address in the one spelling the transports key peers by: lower case (checksums differ in case only). */
export function lower(address: Address): Address {
  return address.toLowerCase() as Address;
}
