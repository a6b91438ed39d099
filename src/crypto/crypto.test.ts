import { statSync, chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { tempDir } from '../testing/agents.ts';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeystoreError, WrongPasswordError } from '../errors.ts';
import { keccak } from '../model/hash.ts';
import { addressOf, Signer } from './keys.ts';
import { loadOrCreateKeystore, readKeystore, writeKeystore } from './keystore.ts';
import { recoverAddress, verifyDigest } from './verify.ts';

describe('signatures', () => {
  it('known vector: private key 1 has the well-known address', () => {
    const key = new Uint8Array(32);
    key[31] = 1;
    expect(new Signer(key).address).toBe('0x7e5f4552091a69125d5dfcb7b8c2659029395bdf');
  });

  it('sign → verify and recover, for any digest', () => {
    const s = Signer.random();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (digest) => {
        const sig = s.sign(digest);
        expect(sig.length).toBe(65);
        expect([27, 28]).toContain(sig[64]);
        expect(verifyDigest(sig, digest, s.publicKey)).toBe(true);
        expect(recoverAddress(sig, digest)).toBe(s.address);
      }),
      { numRuns: 30 },
    );
  });

  it('rejects any single-byte change and any other key, without throwing', () => {
    const s = Signer.random();
    const other = Signer.random();
    const digest = keccak(new Uint8Array([1, 2, 3]));
    const sig = s.sign(digest);
    expect(verifyDigest(sig, digest, other.publicKey)).toBe(false);
    fc.assert(
      fc.property(fc.nat(64), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const bad = sig.slice();
        bad[i] = bad[i]! ^ x;
        expect(verifyDigest(bad, digest, s.publicKey)).toBe(false);
      }),
      { numRuns: 100 },
    );
    expect(verifyDigest(sig.subarray(0, 64), digest, s.publicKey)).toBe(false);
    expect(recoverAddress(new Uint8Array(65), digest)).toBe(null);
  });

  it('refuses the high-s twin of every signature, in verify and in recover (the contract refuses it too)', () => {
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const s = Signer.random();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (digest) => {
        const sig = s.sign(digest);
        const high = BigInt(`0x${Buffer.from(sig.subarray(32, 64)).toString('hex')}`);
        const twin = sig.slice();
        twin.set(Buffer.from((n - high).toString(16).padStart(64, '0'), 'hex'), 32);
        twin[64] = sig[64] === 27 ? 28 : 27;
        expect(verifyDigest(twin, digest, s.publicKey)).toBe(false);
        expect(recoverAddress(twin, digest)).toBe(null);
      }),
      { numRuns: 30 },
    );
  });

  it('address of compressed and uncompressed keys agree', async () => {
    const { secp256k1 } = await import('@noble/curves/secp256k1.js');
    const s = Signer.random();
    expect(addressOf(secp256k1.Point.fromBytes(s.publicKey).toBytes(true))).toBe(s.address);
  });

  it('never exposes the private key through JSON', () => {
    const s = Signer.random();
    expect(JSON.stringify({ s })).toBe(`{"s":{"address":"${s.address}"}}`);
  });
});

describe('V3 keystore', () => {
  const dir = tempDir('picopay-ks-');
  it('round-trips, is mode 0600 and refuses a wrong password', () => {
    const path = join(dir, 'a', 'key.json');
    const { signer, created } = loadOrCreateKeystore(path, 'pw', { scryptN: 1 << 10 });
    expect(created).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readKeystore(path, 'pw').address).toBe(signer.address);
    expect(loadOrCreateKeystore(path, 'pw').created).toBe(false);
    expect(() => readKeystore(path, 'nope')).toThrow(WrongPasswordError);
    expect(readFileSync(path, 'utf8')).not.toContain(Buffer.from(signer.exportPrivateKey()).toString('hex'));
  });

  it('refuses a key file readable by others', () => {
    const path = join(dir, 'open.json');
    writeKeystore(path, Signer.random(), '', { scryptN: 1 << 10 });
    chmodSync(path, 0o644);
    expect(() => readKeystore(path, '')).toThrow(KeystoreError);
  });

  it('refuses malformed files with a typed error', () => {
    const path = join(dir, 'bad.json');
    writeFileSync(path, '{"version":3,"crypto":{}}', { mode: 0o600 });
    expect(() => readKeystore(path, '')).toThrow(KeystoreError);
    writeFileSync(path, 'not json', { mode: 0o600 });
    expect(() => readKeystore(path, '')).toThrow(KeystoreError);
  });

  it('reads a keystore made by another implementation (geth test vector)', () => {
    // Web3 Secret Storage definition's scrypt test vector (password "testpassword").
    const vector = {
      crypto: {
        cipher: 'aes-128-ctr',
        cipherparams: { iv: '83dbcc02d8ccb40e466191a123791e0e' },
        ciphertext: 'd172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c',
        kdf: 'scrypt',
        kdfparams: { dklen: 32, n: 262144, p: 8, r: 1, salt: 'ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19' },
        mac: '2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097',
      },
      id: '3198bc9c-6672-5ab3-d995-4942343ae5b6',
      version: 3,
    };
    const path = join(dir, 'vector.json');
    writeFileSync(path, JSON.stringify(vector), { mode: 0o600 });
    const s = readKeystore(path, 'testpassword');
    expect(Buffer.from(s.exportPrivateKey()).toString('hex')).toBe('7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d');
  });
});
