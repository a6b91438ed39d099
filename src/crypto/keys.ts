import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak } from '../model/hash.ts';
import { toHex } from '../model/hash.ts';
import type { Address } from '../model/types.ts';

export function generatePrivateKey(): Uint8Array {
  return secp256k1.utils.randomSecretKey();
}

/** 65-byte uncompressed public key (0x04 ‖ x ‖ y). */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return secp256k1.getPublicKey(privateKey, false);
}

/** Ethereum address: the last 20 bytes of keccak256(x ‖ y). Accepts compressed keys too. */
export function addressOf(publicKey: Uint8Array): Address {
  const uncompressed = publicKey.length === 65 ? publicKey : secp256k1.Point.fromBytes(publicKey).toBytes(false);
  return toHex(keccak(uncompressed.subarray(1)).subarray(12));
}

/** A signing identity. The private key stays inside; logs see only the address. */
export class Signer {
  readonly publicKey: Uint8Array;
  readonly address: Address;
  readonly #privateKey: Uint8Array;

  constructor(privateKey: Uint8Array) {
    this.#privateKey = privateKey;
    this.publicKey = publicKeyOf(privateKey);
    this.address = addressOf(this.publicKey);
  }

  static random(): Signer {
    return new Signer(generatePrivateKey());
  }

  /** 65 bytes r ‖ s ‖ v (v = 27 + recovery bit) over a 32-byte digest, RFC 6979 deterministic. */
  sign(digest: Uint8Array): Uint8Array {
    const rec = secp256k1.sign(digest, this.#privateKey, { prehash: false, format: 'recovered' });
    const out = new Uint8Array(65);
    out.set(rec.subarray(1), 0);
    out[64] = 27 + rec[0]!;
    return out;
  }

  /** The x coordinate of ECDH with `publicKey`: a secret only this key and that key's holder can compute. */
  sharedSecret(publicKey: Uint8Array): Uint8Array {
    return secp256k1.getSharedSecret(this.#privateKey, publicKey, true).subarray(1);
  }

  /** For the keystore only. */
  exportPrivateKey(): Uint8Array {
    return this.#privateKey.slice();
  }

  toJSON(): { address: Address } {
    return { address: this.address };
  }
}
