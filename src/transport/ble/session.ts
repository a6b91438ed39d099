import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { keccak } from '../../model/hash.ts';
import type { LinkRole } from './handshake.ts';

// What authenticates a bound link's messages: each carries a counter and a 16-byte HMAC
// under the sender's direction of the session key (handshake.ts). The counter only grows,
// so a message cannot be replayed or reordered on the link; one lost is skipped over. A
// voucher with its 20 bytes of counter and tag is still one packet at an MTU of 247.

const TAG_BYTES = 16;
const COUNTER_BYTES = 4;
/** What sealing adds to a message. */
export const SEAL_BYTES = COUNTER_BYTES + TAG_BYTES;

function directionKey(key: Uint8Array, role: LinkRole): Uint8Array {
  const label = utf8ToBytes(role);
  const data = new Uint8Array(key.length + label.length);
  data.set(key);
  data.set(label, key.length);
  return keccak(data);
}

function tag(key: Uint8Array, type: number, counter: Uint8Array, body: Uint8Array): Uint8Array {
  const data = new Uint8Array(1 + counter.length + body.length);
  data[0] = type;
  data.set(counter, 1);
  data.set(body, 1 + counter.length);
  return hmac(sha256, key, data).subarray(0, TAG_BYTES);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length && i < b.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export class Session {
  readonly #sendKey: Uint8Array;
  readonly #receiveKey: Uint8Array;
  #sent = 0;
  #received = 0;

  /** `role`: this side's role on the link. */
  constructor(key: Uint8Array, role: LinkRole) {
    this.#sendKey = directionKey(key, role);
    this.#receiveKey = directionKey(key, role === 'central' ? 'peripheral' : 'central');
  }

  /** `body` with its counter and tag; null once the counter is spent (the link must be made anew). */
  seal(type: number, body: Uint8Array): Uint8Array | null {
    if (this.#sent >= 0xffffffff) return null;
    const counter = new Uint8Array(COUNTER_BYTES);
    new DataView(counter.buffer).setUint32(0, ++this.#sent);
    const out = new Uint8Array(COUNTER_BYTES + body.length + TAG_BYTES);
    out.set(counter);
    out.set(body, COUNTER_BYTES);
    out.set(tag(this.#sendKey, type, counter, body), COUNTER_BYTES + body.length);
    return out;
  }

  /** The body of a message the peer sealed, newer than the last one taken; null for anything else. */
  open(type: number, sealed: Uint8Array): Uint8Array | null {
    if (sealed.length < SEAL_BYTES) return null;
    const counter = sealed.subarray(0, COUNTER_BYTES);
    const n = new DataView(counter.buffer, counter.byteOffset, COUNTER_BYTES).getUint32(0);
    const body = sealed.subarray(COUNTER_BYTES, sealed.length - TAG_BYTES);
    if (n <= this.#received || !equal(tag(this.#receiveKey, type, counter, body), sealed.subarray(sealed.length - TAG_BYTES))) return null;
    this.#received = n;
    return body;
  }
}
