// The hotspot's tariff, signed by its key and served by its proxy at GET /picopay/tariff,
// so that a payer learns the unit, the price and how far ahead it must pay from the
// hotspot it is about to pay, checks them against its own limit before it locks anything,
// and then meters exactly as the hotspot does.
//   { "hotspot": "0x…", "unitBytes": 102400, "price": "<wei>", "prepaidUnits": 1, "sig": "0x…" }
// sig: r ‖ s ‖ v over keccak256("picopay-tariff:" + hotspot + ":" + unitBytes + ":" + price + ":" + prepaidUnits).
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { formatEth } from '../../src/cli/units.ts';
import { recoverAddress } from '../../src/crypto/verify.ts';
import { fromHex, keccak, toHex } from '../../src/model/hash.ts';
import { TariffRefusedError } from './errors.ts';
import { createTariff, type Tariff } from './meter.ts';

export const TARIFF_PATH = '/picopay/tariff';

export interface SignedTariff {
  hotspot: string;
  unitBytes: number;
  price: string;
  prepaidUnits: number;
  sig: string;
}

function tariffDigest(hotspot: string, t: Tariff): Uint8Array {
  return keccak(utf8ToBytes(`picopay-tariff:${hotspot.toLowerCase()}:${t.unitBytes}:${t.pricePerUnit}:${t.prepaidUnits}`));
}

/** The tariff as the hotspot `hotspot` serves it, signed with `sign` (its key's). */
export function signTariff(hotspot: string, t: Tariff, sign: (digest: Uint8Array) => Uint8Array): SignedTariff {
  return { hotspot: hotspot.toLowerCase(), unitBytes: t.unitBytes, price: t.pricePerUnit.toString(), prepaidUnits: t.prepaidUnits, sig: toHex(sign(tariffDigest(hotspot, t))) };
}

/**
 * The tariff in `body` if it is signed by `hotspot`, costs at most `maxPrice` per
 * `limit.unitBytes` bytes, and wants at most that many bytes paid ahead; a
 * TariffRefusedError otherwise, naming both sides' figures.
 */
export function acceptTariff(body: unknown, hotspot: string, limit: { maxPrice: bigint; unitBytes: number }): Tariff {
  const t = body as Partial<SignedTariff> | null;
  if (!t || typeof t.unitBytes !== 'number' || typeof t.price !== 'string' || !/^\d{1,78}$/.test(t.price) || typeof t.prepaidUnits !== 'number' || typeof t.sig !== 'string' || !/^0x[0-9a-fA-F]{130}$/.test(t.sig)) {
    throw new TariffRefusedError('the hotspot served no well-formed tariff');
  }
  let tariff: Tariff;
  try {
    tariff = createTariff({ unitBytes: t.unitBytes, pricePerUnit: BigInt(t.price), prepaidUnits: t.prepaidUnits });
  } catch (cause) {
    throw new TariffRefusedError(`the hotspot's tariff is not usable: ${(cause as Error).message}`);
  }
  if (recoverAddress(fromHex(t.sig), tariffDigest(hotspot, tariff)) !== hotspot.toLowerCase()) throw new TariffRefusedError(`the tariff is not signed by the hotspot ${hotspot.toLowerCase()}`);
  // Price per byte, compared without division: price / unitBytes ≤ maxPrice / limit.unitBytes.
  if (tariff.pricePerUnit * BigInt(limit.unitBytes) > limit.maxPrice * BigInt(tariff.unitBytes)) {
    throw new TariffRefusedError(`the hotspot asks ${formatEth(tariff.pricePerUnit)} per ${tariff.unitBytes} bytes, above this payer's limit of ${formatEth(limit.maxPrice)} per ${limit.unitBytes} bytes (--price)`);
  }
  // Paid ahead, before any byte: at most one of the payer's own units' worth.
  if (tariff.prepaidUnits * tariff.unitBytes > limit.unitBytes) {
    throw new TariffRefusedError(`the hotspot wants ${tariff.prepaidUnits * tariff.unitBytes} bytes paid ahead, more than this payer's unit of ${limit.unitBytes} bytes (--unit-bytes)`);
  }
  return tariff;
}

/** Fetches and checks the tariff the proxy at `proxyUrl` serves for `hotspot` (see acceptTariff). */
export async function fetchTariff(proxyUrl: string, hotspot: string, limit: { maxPrice: bigint; unitBytes: number }, timeoutMs = 10_000): Promise<Tariff> {
  let body: unknown;
  try {
    const res = await fetch(new URL(TARIFF_PATH, proxyUrl), { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = await res.json();
  } catch (cause) {
    // fetch says only "fetch failed": the reason is its cause's.
    const reason = ((cause as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? (cause as Error).message;
    throw new TariffRefusedError(`cannot get the hotspot's tariff from ${proxyUrl}: ${reason}`, { cause });
  }
  return acceptTariff(body, hotspot, limit);
}
