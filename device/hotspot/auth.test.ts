import { describe, expect, it } from 'vitest';
import { Signer } from '../../src/crypto/keys.ts';
import { authDigest, authenticate, formatChallenge, formatCredentials, NonceBook, parseChallenge, parseCredentials } from './auth.ts';

const PROXY = '127.0.0.1:8080';
const CHANNEL = `0x${'c1'.repeat(32)}`;

/** A NonceBook on a clock the test moves by hand. */
function book(options: { ttlMs?: number; max?: number } = {}) {
  let now = 0;
  const nonces = new NonceBook({ ...options, now: () => now });
  return { nonces, advance: (ms: number) => (now += ms) };
}

function credentialsFor(signer: Signer, nonce: string, claims: string = signer.address, authority = PROXY, channel = CHANNEL): string {
  return formatCredentials({ address: claims, channel, nonce, sig: signer.sign(authDigest(nonce, authority, channel)) });
}

describe('proxy auth headers', () => {
  it('round-trip, with the scheme in any case', () => {
    const nonce = 'a1'.repeat(32);
    expect(parseChallenge(formatChallenge(nonce))).toBe(nonce);
    expect(parseChallenge(`picopay nonce="${nonce}"`)).toBe(nonce);
    const signer = Signer.random();
    const header = credentialsFor(signer, nonce);
    expect(header).toMatch(/^Picopay address="0x[0-9a-f]{40}", channel="0x[0-9a-f]{64}", nonce="[0-9a-f]{64}", sig="0x[0-9a-f]{130}"$/);
    expect(parseCredentials(header.replace('Picopay', 'PICOPAY'))).toMatchObject({ address: signer.address, nonce });
  });

  it('reject what is not well formed', () => {
    for (const header of [undefined, '', 'Picopay', 'Basic YTpi', `Picopay ${'0x'.padEnd(42, '1')}`, 'Picopay nonce="short"', 'Picopay address="0x12", nonce="', 'Picopay nonce=unquoted']) {
      expect(parseCredentials(header)).toBeUndefined();
    }
    expect(parseChallenge('Picopay nonce="xyz"')).toBeUndefined();
  });
});

describe('NonceBook', () => {
  it('issues distinct 32-byte hex nonces, each usable once', () => {
    const { nonces } = book();
    const a = nonces.issue();
    const b = nonces.issue();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
    expect(nonces.isPending(a)).toBe(true);
    nonces.use(a);
    expect(nonces.isPending(a)).toBe(false);
    expect(nonces.isPending(b)).toBe(true);
    expect(nonces.isPending('00'.repeat(32))).toBe(false);
  });

  it('lets nonces expire after the TTL, and forgets used ones once expired', () => {
    const { nonces, advance } = book({ ttlMs: 30_000 });
    const old = nonces.issue();
    advance(29_999);
    expect(nonces.isPending(old)).toBe(true);
    nonces.use(old);
    advance(1);
    expect(nonces.isPending(old)).toBe(false);
    nonces.use(nonces.issue());
    expect(nonces.size).toBe(1);
  });

  it('keeps no state for issued nonces: a flood of challenges leaves a waiting client\'s nonce valid', () => {
    const { nonces } = book({ max: 100 });
    const mine = nonces.issue();
    for (let i = 0; i < 10_000; i++) nonces.issue();
    expect(nonces.size).toBe(0);
    expect(nonces.isPending(mine)).toBe(true);
  });

  it('refuses a nonce it did not issue, or one whose expiry was edited', () => {
    const { nonces } = book();
    const real = nonces.issue();
    const other = book().nonces.issue();
    expect(nonces.isPending(other)).toBe(false);
    const later = (BigInt(`0x${real.slice(0, 16)}`) + 1_000_000n).toString(16).padStart(16, '0');
    expect(nonces.isPending(later + real.slice(16))).toBe(false);
  });

  it('when its memory of used nonces is full it refuses answers rather than forget one', () => {
    const { nonces, advance } = book({ max: 2, ttlMs: 1000 });
    const [a, b, c] = [nonces.issue(), nonces.issue(), nonces.issue()];
    expect(nonces.use(a)).toBe(true);
    expect(nonces.use(b)).toBe(true);
    expect(nonces.use(c)).toBe(false);
    expect(nonces.isPending(a)).toBe(false);
    advance(1000);
    expect(nonces.use(nonces.issue())).toBe(true);
  });
});

describe('authenticate', () => {
  const alice = Signer.random();
  const mallory = Signer.random();

  it('accepts a pending nonce signed by the named address, until it is spent', () => {
    const { nonces } = book();
    const nonce = nonces.issue();
    const header = credentialsFor(alice, nonce);
    expect(authenticate(header, nonces, [PROXY])).toEqual({ client: alice.address, channel: CHANNEL, nonce });
    expect(nonces.use(nonce)).toBe(true);
    expect(authenticate(header, nonces, [PROXY])).toBeUndefined();
  });

  it('refuses the high-s twin of a valid answer', () => {
    const { nonces } = book();
    const nonce = nonces.issue();
    const sig = alice.sign(authDigest(nonce, PROXY, CHANNEL));
    const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const s = BigInt(`0x${Buffer.from(sig.subarray(32, 64)).toString('hex')}`);
    const twin = Uint8Array.from([...sig.subarray(0, 32), ...Buffer.from((N - s).toString(16).padStart(64, '0'), 'hex'), sig[64] === 27 ? 28 : 27]);
    expect(authenticate(formatCredentials({ address: alice.address, channel: CHANNEL, nonce, sig: twin }), nonces, [PROXY])).toBeUndefined();
    expect(authenticate(formatCredentials({ address: alice.address, channel: CHANNEL, nonce, sig }), nonces, [PROXY])).toMatchObject({ client: alice.address, channel: CHANNEL });
  });

  it('refuses another key, another proxy, an unknown or expired nonce', () => {
    const { nonces, advance } = book({ ttlMs: 1000 });
    const nonce = nonces.issue();
    expect(authenticate(credentialsFor(mallory, nonce, alice.address), nonces, [PROXY])).toBeUndefined();
    // Alice's answer, moved to another channel than the one she signed for.
    const moved = credentialsFor(alice, nonce).replace(CHANNEL, `0x${'d2'.repeat(32)}`);
    expect(authenticate(moved, nonces, [PROXY])).toBeUndefined();
    expect(authenticate(credentialsFor(alice, nonce, alice.address, 'evil.example:8080'), nonces, [PROXY])).toBeUndefined();
    expect(authenticate(credentialsFor(alice, 'cd'.repeat(32)), nonces, [PROXY])).toBeUndefined();
    // Failed attempts leave the nonce to its owner, who may sign any name the proxy answers to.
    expect(authenticate(credentialsFor(alice, nonce, alice.address, 'hotspot.lan:8080'), nonces, [PROXY, 'hotspot.lan:8080'])).toMatchObject({ client: alice.address, channel: CHANNEL });
    const late = nonces.issue();
    advance(1000);
    expect(authenticate(credentialsFor(alice, late), nonces, [PROXY])).toBeUndefined();
  });
});
