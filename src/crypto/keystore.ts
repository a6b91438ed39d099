import { createCipheriv, createDecipheriv, randomBytes, randomUUID, scryptSync, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { scrypt as nobleScrypt } from '@noble/hashes/scrypt.js';
import { KeystoreError, WrongPasswordError } from '../errors.ts';
import { fromHex, keccak } from '../model/hash.ts';
import { Signer } from './keys.ts';

// Ethereum V3 keystore (the format geth and MetaMask read): scrypt-derived key,
// AES-128-CTR ciphertext, keccak256 MAC. The file is created with mode 0600 and a key
// file readable by group or others is refused, as ssh refuses such a key.

export interface KeystoreV3 {
  version: 3;
  id: string;
  address: string;
  crypto: {
    cipher: 'aes-128-ctr';
    cipherparams: { iv: string };
    ciphertext: string;
    kdf: 'scrypt';
    kdfparams: { dklen: number; n: number; r: number; p: number; salt: string };
    mac: string;
  };
}

export interface KeystoreOptions {
  /** scrypt cost; 2^15 (32 MiB) by default so that a Raspberry Pi Zero can unlock it. */
  scryptN?: number;
}

const DEFAULT_N = 1 << 15;

function deriveKey(password: string, salt: Uint8Array, n: number, r: number, p: number, dklen: number): Buffer {
  const pw = Buffer.from(password.normalize('NFKC'), 'utf8');
  try {
    return scryptSync(pw, salt, dklen, { N: n, r, p, maxmem: 256 * r * (n + p + 2) + (32 << 20) });
  } catch {
    // OpenSSL refuses N ≥ 2^(16·r), which other wallets do write (r = 1): use the JS scrypt.
    return Buffer.from(nobleScrypt(pw, salt, { N: n, r, p, dkLen: dklen, maxmem: 2 ** 31 }));
  }
}

function mac(derived: Uint8Array, ciphertext: Uint8Array): Buffer {
  const buf = new Uint8Array(16 + ciphertext.length);
  buf.set(derived.subarray(16, 32), 0);
  buf.set(ciphertext, 16);
  return Buffer.from(keccak(buf));
}

export function encryptKeystore(signer: Signer, password: string, options: KeystoreOptions = {}): KeystoreV3 {
  const n = options.scryptN ?? DEFAULT_N;
  const salt = randomBytes(32);
  const iv = randomBytes(16);
  const derived = deriveKey(password, salt, n, 8, 1, 32);
  const cipher = createCipheriv('aes-128-ctr', derived.subarray(0, 16), iv);
  const ciphertext = Buffer.concat([cipher.update(signer.exportPrivateKey()), cipher.final()]);
  return {
    version: 3,
    id: randomUUID(),
    address: signer.address.slice(2),
    crypto: {
      cipher: 'aes-128-ctr',
      cipherparams: { iv: iv.toString('hex') },
      ciphertext: ciphertext.toString('hex'),
      kdf: 'scrypt',
      kdfparams: { dklen: 32, n, r: 8, p: 1, salt: salt.toString('hex') },
      mac: mac(derived, ciphertext).toString('hex'),
    },
  };
}

function field(cond: unknown, what: string): void {
  if (!cond) throw new KeystoreError(`keystore: ${what}`);
}

export function decryptKeystore(json: unknown, password: string): Signer {
  const ks = json as KeystoreV3;
  field(ks && typeof ks === 'object' && ks.version === 3, 'not a version 3 keystore');
  const c = ks.crypto;
  field(c && c.cipher === 'aes-128-ctr' && c.kdf === 'scrypt', 'only aes-128-ctr with scrypt is supported');
  const { n, r, p, dklen, salt } = c.kdfparams ?? ({} as KeystoreV3['crypto']['kdfparams']);
  field([n, r, p, dklen].every((x) => Number.isSafeInteger(x) && x > 0) && dklen >= 32, 'bad kdfparams');
  field(n <= 1 << 20 && (n & (n - 1)) === 0 && r * p <= 64, 'scrypt n must be a power of two ≤ 2^20, r·p ≤ 64');
  const hex = (s: unknown, what: string): Buffer => {
    field(typeof s === 'string' && /^([0-9a-f]{2})*$/i.test(s), `${what} is not hex`);
    return Buffer.from(s as string, 'hex');
  };
  const ciphertext = hex(c.ciphertext, 'ciphertext');
  const derived = deriveKey(password, hex(salt, 'salt'), n, r, p, dklen);
  const expected = hex(c.mac, 'mac');
  const actual = mac(derived, ciphertext);
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) throw new WrongPasswordError();
  const decipher = createDecipheriv('aes-128-ctr', derived.subarray(0, 16), hex(c.cipherparams?.iv, 'iv'));
  const key = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  field(key.length === 32, 'private key must be 32 bytes');
  const signer = new Signer(new Uint8Array(key));
  if (typeof ks.address === 'string' && ks.address.length > 0) {
    field(fromHex(ks.address).length === 20 && `0x${ks.address.toLowerCase().replace(/^0x/, '')}` === signer.address, 'address does not match the key');
  }
  return signer;
}

export function writeKeystore(path: string, signer: Signer, password: string, options: KeystoreOptions = {}): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, JSON.stringify(encryptKeystore(signer, password, options), null, 2), { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
}

export function readKeystore(path: string, password: string): Signer {
  // A path that names no keystore is a user's mistake: one line, not a stack.
  if (!existsSync(path)) throw new KeystoreError(`no keystore at ${path}`);
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) throw new KeystoreError(`keystore ${path} has mode ${mode.toString(8)}: must be 0600`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new KeystoreError(`keystore ${path} is not JSON`, { cause });
  }
  return decryptKeystore(json, password);
}

/** Reads the keystore at `path`, or generates a key on this machine and writes it there. */
export function loadOrCreateKeystore(path: string, password: string, options: KeystoreOptions = {}): { signer: Signer; created: boolean } {
  if (existsSync(path)) return { signer: readKeystore(path, password), created: false };
  const signer = Signer.random();
  writeKeystore(path, signer, password, options);
  return { signer, created: true };
}
