import { utf8ToBytes } from '@noble/hashes/utils.js';
import type { Signer } from '../crypto/keys.ts';
import { recoverAddress } from '../crypto/verify.ts';
import { fromHex, keccak, toHex } from '../model/hash.ts';
import { isAddress } from './topics.ts';

// Broker logins by picopay key. A device logs in with its address as username and, as
// password, a token only the key's owner can make:
//
//   v1:<expiry, unix seconds>:<0x r ‖ s ‖ v over keccak256("picopay-mqtt-login:" +
//       <broker host:port, as the client dials it> + ":" + <address> + ":" + <expiry>)>:<that host:port>
//
// The broker accepts it when the signature (low-s) recovers the username, the token names
// one of the broker's own host:port names (a token made for another broker is useless
// here; the name travels with it, so a forged login costs the broker one signature
// recovery, not one per name), and it expires in the future but within MAX_LOGIN_TTL_S (plus CLOCK_SKEW_S) of the
// broker's clock. The transport makes a fresh token for every connection attempt. Until
// it expires a token could be replayed by someone who saw it: over the network, use TLS.

/** Longest a token may be valid for. */
export const MAX_LOGIN_TTL_S = 600;
/** How far the broker's and the device's clocks may disagree. */
export const CLOCK_SKEW_S = 60;

const TOKEN = /^v1:(\d{1,12}):(0x[0-9a-f]{130}):([^\s]{1,300})$/;

function loginDigest(authority: string, address: string, expiry: number): Uint8Array {
  return keccak(utf8ToBytes(`picopay-mqtt-login:${authority}:${address}:${expiry}`));
}

/** The host:port a client dials for `url` (mqtt:// 1883 and mqtts:// 8883 by default). */
export function brokerAuthority(url: string): string {
  const u = new URL(url);
  const port = u.port || (u.protocol === 'mqtts:' ? '8883' : '1883');
  return `${u.hostname}:${port}`;
}

/** A login token for `signer` at the broker reached as `authority`, valid for `ttlS` seconds from `nowS`. */
export function loginToken(signer: Signer, authority: string, nowS = Math.floor(Date.now() / 1000), ttlS = MAX_LOGIN_TTL_S): string {
  const expiry = nowS + Math.min(ttlS, MAX_LOGIN_TTL_S);
  return `v1:${expiry}:${toHex(signer.sign(loginDigest(authority, signer.address, expiry)))}:${authority}`;
}

/** Whether `password` proves the key of `username` to the broker named `authorities`, at `nowS`. */
export function verifyLogin(username: string | undefined, password: Buffer | undefined, authorities: readonly string[], nowS = Math.floor(Date.now() / 1000)): boolean {
  if (username === undefined || password === undefined || !isAddress(username)) return false;
  const match = TOKEN.exec(password.toString('utf8'));
  if (!match) return false;
  const expiry = Number(match[1]);
  if (expiry <= nowS || expiry > nowS + MAX_LOGIN_TTL_S + CLOCK_SKEW_S) return false;
  const authority = match[3]!;
  if (!authorities.includes(authority)) return false;
  return recoverAddress(fromHex(match[2]! as `0x${string}`), loginDigest(authority, username, expiry)) === username;
}

// For brokers that cannot check a signature (Mosquitto with its dynamic-security plugin),
// a fixed password per key and broker: the same signature every time (RFC 6979), which
// the device hands the gateway once, over the broker's write-only enrollment topic, and
// the gateway checks before it creates the login (gateway/enrollment.ts). Useless at
// another broker; a bearer secret at this one, so use TLS.

function passwordDigest(authority: string, address: string): Uint8Array {
  return keccak(utf8ToBytes(`picopay-mqtt-password:${authority}:${address}`));
}

/** The fixed password of `signer` at the broker reached as `authority`. */
export function brokerPassword(signer: Signer, authority: string): string {
  return `v1p:${toHex(signer.sign(passwordDigest(authority, signer.address)))}`;
}

/** Whether `password` is `username`'s fixed password at a broker named one of `authorities`. */
export function verifyBrokerPassword(username: string, password: string, authorities: readonly string[]): boolean {
  if (!isAddress(username)) return false;
  const match = /^v1p:(0x[0-9a-f]{130})$/.exec(password);
  if (!match) return false;
  const sig = fromHex(match[1]! as `0x${string}`);
  return authorities.some((authority) => recoverAddress(sig, passwordDigest(authority, username)) === username);
}
