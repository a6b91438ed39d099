import { secp256k1 } from '@noble/curves/secp256k1.js';
import type { Address } from '../model/types.ts';
import { addressOf } from './keys.ts';

function toRecovered(sig: Uint8Array): Uint8Array | null {
  if (sig.length !== 65) return null;
  const v = sig[64]!;
  if (v !== 27 && v !== 28) return null;
  const rec = new Uint8Array(65);
  rec[0] = v - 27;
  rec.set(sig.subarray(0, 64), 1);
  return rec;
}

/**
 * True when `sig` (r ‖ s ‖ v) signs `digest` under `publicKey`. High-s signatures are
 * refused, as the contract refuses them, so a signature has exactly one valid encoding.
 * Never throws on malformed input.
 */
export function verifyDigest(sig: Uint8Array, digest: Uint8Array, publicKey: Uint8Array): boolean {
  const rec = toRecovered(sig);
  if (!rec) return false;
  try {
    return secp256k1.verify(rec, digest, publicKey, { prehash: false, format: 'recovered', lowS: true });
  } catch {
    return false;
  }
}

/** The address that signed `digest`, or null when the signature is malformed. */
export function recoverAddress(sig: Uint8Array, digest: Uint8Array): Address | null {
  const pub = recoverPublicKey(sig, digest);
  return pub && addressOf(pub);
}

/**
 * The 65-byte uncompressed public key that signed `digest`, or null. The high-s twin of a
 * signature recovers the same key but is refused here too: the contract refuses it, so a
 * party that stored one for use on-chain would hold nothing.
 */
export function recoverPublicKey(sig: Uint8Array, digest: Uint8Array): Uint8Array | null {
  const rec = toRecovered(sig);
  if (!rec) return null;
  try {
    const signature = secp256k1.Signature.fromBytes(rec, 'recovered');
    if (signature.hasHighS()) return null;
    return signature.recoverPublicKey(digest).toBytes(false);
  } catch {
    return null;
  }
}
