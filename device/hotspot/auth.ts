// Proxy authentication: a challenge-response, so that only the holder of a client's key
// spends that client's allowance, and a captured header is worth nothing.
//   1. The proxy answers a request without valid credentials with
//        407, Proxy-Authenticate: Picopay nonce="<64 hex digits: 32 random bytes>"
//   2. The client repeats its request with
//        Proxy-Authorization: Picopay address="0x…", channel="0x…", nonce="…", sig="0x…"
//      sig: 65 bytes r ‖ s ‖ v over keccak256("picopay-proxy-auth:" + nonce + ":" + host:port
//      of the proxy + ":" + channel), so a challenge relayed from another proxy is useless
//      here. `channel` names the virtual channel that pays for the request: the proxy
//      meters each channel on its own, so a payer can settle one and come back with another.
//   3. The proxy accepts a nonce it issued, not expired, once: one nonce, one request. It
//      spends it when it serves the request, once the channel has paid: unpaid keys, which
//      cost nothing to make, never fill the memory of used nonces.
//      Nonces are stateless (see NonceBook), so unauthenticated requests cost no memory.
//      Signatures are low-s only (recoverAddress), so a signature has one valid form.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { recoverAddress } from '../../src/crypto/verify.ts';
import { fromHex, keccak, toHex } from '../../src/model/hash.ts';

export const AUTH_SCHEME = 'Picopay';

/** What the client signs to answer `nonce` from the proxy it reaches at `proxyAuthority` (host:port), paying from `channel`. */
export function authDigest(nonce: string, proxyAuthority: string, channel: string): Uint8Array {
  return keccak(utf8ToBytes(`picopay-proxy-auth:${nonce}:${proxyAuthority}:${channel.toLowerCase()}`));
}

export interface Credentials {
  /** Lowercase 0x address. */
  address: string;
  /** The paying virtual channel's id, lowercase 0x hex. */
  channel: string;
  nonce: string;
  sig: Uint8Array;
}

export function formatChallenge(nonce: string): string {
  return `${AUTH_SCHEME} nonce="${nonce}"`;
}

/** The nonce of a `Proxy-Authenticate: Picopay nonce="…"` header, if it holds one. */
export function parseChallenge(header: string | undefined): string | undefined {
  const nonce = authParams(header)?.get('nonce');
  return nonce !== undefined && NONCE.test(nonce) ? nonce : undefined;
}

export function formatCredentials({ address, channel, nonce, sig }: Credentials): string {
  return `${AUTH_SCHEME} address="${address}", channel="${channel}", nonce="${nonce}", sig="${toHex(sig)}"`;
}

export function parseCredentials(header: string | undefined): Credentials | undefined {
  const params = authParams(header);
  const address = params?.get('address');
  const channel = params?.get('channel');
  const nonce = params?.get('nonce');
  const sig = params?.get('sig');
  if (address === undefined || !ADDRESS.test(address)) return undefined;
  if (channel === undefined || !CHANNEL.test(channel)) return undefined;
  if (nonce === undefined || !NONCE.test(nonce)) return undefined;
  if (sig === undefined || !SIGNATURE.test(sig)) return undefined;
  return { address: address.toLowerCase(), channel: channel.toLowerCase(), nonce, sig: fromHex(sig) };
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const CHANNEL = /^0x[0-9a-fA-F]{64}$/;
const NONCE = /^[0-9a-f]{64}$/;
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;
// Auth schemes are case-insensitive (RFC 9110); we only ever send quoted parameters.
const SCHEME = /^picopay +(.*)$/i;
const PARAM = /^\s*([a-z]+)="([^"]*)"\s*$/i;

/** The `name="value"` parameters after the Picopay scheme; undefined for another scheme or bad syntax. */
function authParams(header: string | undefined): Map<string, string> | undefined {
  const rest = SCHEME.exec(header ?? '')?.[1];
  if (rest === undefined) return undefined;
  const params = new Map<string, string>();
  for (const part of rest.split(',')) {
    const match = PARAM.exec(part);
    if (match === null) return undefined;
    params.set(match[1]!.toLowerCase(), match[2]!);
  }
  return params;
}

export interface NonceBookOptions {
  /** How long an issued nonce stays valid (default 30 s). */
  ttlMs?: number;
  /** Most used nonces remembered at once (default 10,000); when full, new answers are refused until some expire. */
  max?: number;
  /** Clock in ms, for tests. */
  now?: () => number;
}

/**
 * Challenge nonces that cost nothing to issue: each carries its own expiry and a MAC under
 * a secret of this process (expiry 8 bytes ‖ random 8 ‖ HMAC-SHA256 truncated to 16), so
 * the proxy keeps no state for a challenge, and a flood of unauthenticated requests
 * cannot push a waiting client's nonce out. Only answered nonces are remembered (until
 * they expire), so each is accepted once. That memory fills only with signed answers;
 * when it is full the proxy refuses answers (fail closed) rather than forget one, which
 * would let a captured header be replayed.
 */
export class NonceBook {
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #secret = randomBytes(32);
  /** used nonce → expiry; insertion order is expiry order, since the TTL is fixed. */
  readonly #used = new Map<string, number>();

  constructor(options: NonceBookOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 30_000;
    this.#max = Math.max(1, options.max ?? 10_000);
    this.#now = options.now ?? (() => Date.now());
  }

  /** How many used nonces are remembered. */
  get size(): number {
    return this.#used.size;
  }

  issue(): string {
    const body = Buffer.alloc(16);
    body.writeBigUInt64BE(BigInt(Math.floor(this.#now() + this.#ttlMs)));
    randomBytes(8).copy(body, 8);
    return Buffer.concat([body, this.#mac(body)]).toString('hex');
  }

  /** Whether `nonce` was issued here, has not expired, and has not been used. */
  isPending(nonce: string): boolean {
    if (!NONCE.test(nonce)) return false;
    const raw = Buffer.from(nonce, 'hex');
    const body = raw.subarray(0, 16);
    if (!timingSafeEqual(raw.subarray(16), this.#mac(body))) return false;
    return this.#now() < Number(body.readBigUInt64BE()) && !this.#used.has(nonce);
  }

  /**
   * Marks `nonce` used: it will never be accepted again. False when it was used already (two
   * requests that waited with one header: only the first is served) or when the memory of
   * used nonces is full.
   */
  use(nonce: string): boolean {
    if (this.#used.has(nonce)) return false;
    const now = this.#now();
    for (const [n, expiry] of this.#used) {
      if (expiry > now) break;
      this.#used.delete(n);
    }
    if (this.#used.size >= this.#max) return false;
    this.#used.set(nonce, Number(Buffer.from(nonce, 'hex').readBigUInt64BE()));
    return true;
  }

  #mac(body: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update(body).digest().subarray(0, 16);
  }
}

/**
 * The client address a `Proxy-Authorization` header proves, the channel it pays from and
 * the nonce it answers (spend it with `nonces.use` when the request is served); undefined
 * when the header is missing, malformed, answers no pending nonce of ours, or is not signed
 * by the address it names. `proxyAuthorities`: the host:port names this proxy accepts.
 * A bad signature leaves the nonce pending, so a forged attempt cannot burn a client's nonce.
 */
export function authenticate(header: string | undefined, nonces: NonceBook, proxyAuthorities: readonly string[]): { client: string; channel: string; nonce: string } | undefined {
  const credentials = parseCredentials(header);
  if (credentials === undefined || !nonces.isPending(credentials.nonce)) return undefined;
  const signedHere = proxyAuthorities.some((authority) => recoverAddress(credentials.sig, authDigest(credentials.nonce, authority, credentials.channel)) === credentials.address);
  if (!signedHere) return undefined;
  return { client: credentials.address, channel: credentials.channel, nonce: credentials.nonce };
}
