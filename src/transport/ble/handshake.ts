import { utf8ToBytes } from '@noble/hashes/utils.js';
import { randomBytes } from 'node:crypto';
import type { Signer } from '../../crypto/keys.ts';
import { addressOf } from '../../crypto/keys.ts';
import { recoverPublicKey } from '../../crypto/verify.ts';
import { MalformedMessageError, WrongPeerError } from '../../errors.ts';
import type { Address } from '../../model/types.ts';
import { keccak } from '../../model/hash.ts';

// Binds a BLE link to two picopay addresses before any frame on it counts as coming from
// either (BLE addresses are random and say nothing). Three messages, on the link's first
// frames:
//
//   peripheral → central  challenge: its 32-byte nonce P
//   central → peripheral  proof: its address A, its nonce C, sig_A(digest("central", P, C, B))
//   peripheral → central  proof: its address B, sig_B(digest("peripheral", P, C, A))
//
// where digest = keccak256("picopay-ble-link:v1:" ‖ role ‖ P ‖ C ‖ the other's address).
// Each side signs the other's fresh nonce and names its peer, so a proof cannot be replayed
// on another link, reflected back (the role differs) or relayed to someone else. The
// central knows B from the advertisement it chose and checks the peripheral is that key.
//
// The proofs give each side the other's public key, and with it a session key: keccak of
// the two keys' ECDH secret and both nonces. The link then authenticates every message
// with it (session.ts), so that one in the middle who passed the handshake on unchanged
// (holding neither key) cannot put a frame of its own on the link.

const NONCE_BYTES = 32;
const PREFIX = utf8ToBytes('picopay-ble-link:v1:');

export type LinkRole = 'central' | 'peripheral';

/** The handshake's messages, as the link carries them (CBOR-encoded by the transport). */
export type LinkMessage = { t: 'challenge'; nonce: Uint8Array } | { t: 'proof'; from: Address; nonce?: Uint8Array; sig: Uint8Array };

function linkDigest(role: LinkRole, p: Uint8Array, c: Uint8Array, peer: Address): Uint8Array {
  const peerBytes = utf8ToBytes(peer.toLowerCase());
  const roleBytes = utf8ToBytes(role);
  const data = new Uint8Array(PREFIX.length + roleBytes.length + p.length + c.length + peerBytes.length);
  let at = 0;
  for (const part of [PREFIX, roleBytes, p, c, peerBytes]) {
    data.set(part, at);
    at += part.length;
  }
  return keccak(data);
}

const SESSION = utf8ToBytes('picopay-ble-session:v1:');

/** The link's session key, the same on both sides: neither nonce nor key alone gives it. */
function sessionKey(signer: Signer, peerKey: Uint8Array, p: Uint8Array, c: Uint8Array): Uint8Array {
  const secret = signer.sharedSecret(peerKey);
  const data = new Uint8Array(SESSION.length + secret.length + p.length + c.length);
  data.set(SESSION);
  data.set(secret, SESSION.length);
  data.set(p, SESSION.length + secret.length);
  data.set(c, SESSION.length + secret.length + p.length);
  return keccak(data);
}

/** Who signed `digest`, with the key. */
function signerOf(sig: Uint8Array, digest: Uint8Array): { address: Address; key: Uint8Array } | null {
  const key = recoverPublicKey(sig, digest);
  return key && { address: addressOf(key), key };
}

function nonceOk(n: unknown): n is Uint8Array {
  return n instanceof Uint8Array && n.length === NONCE_BYTES;
}

function sigOk(s: unknown): s is Uint8Array {
  return s instanceof Uint8Array && s.length === 65;
}

/**
 * The peripheral's side: `start()` gives the challenge; `receive(proof)` checks the
 * central's proof and gives the answer, and from then on `peer` is the central's address.
 */
export class PeripheralHandshake {
  readonly #nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  #peer: Address | null = null;
  /** Once bound: the session key (see sessionKey). */
  session: Uint8Array | null = null;

  constructor(private readonly signer: Signer) {}

  get peer(): Address | null {
    return this.#peer;
  }

  start(): LinkMessage {
    return { t: 'challenge', nonce: this.#nonce };
  }

  /** Throws (and stays unbound) for a proof that is malformed or not the claimed key's. */
  receive(msg: LinkMessage): LinkMessage {
    if (this.#peer) throw new MalformedMessageError('the link is bound already');
    if (msg.t !== 'proof' || !nonceOk(msg.nonce) || !sigOk(msg.sig) || typeof msg.from !== 'string') throw new MalformedMessageError('not a central proof');
    const signedBy = signerOf(msg.sig, linkDigest('central', this.#nonce, msg.nonce, this.signer.address));
    if (signedBy === null || signedBy.address !== msg.from.toLowerCase()) throw new WrongPeerError('the central does not hold the key it names');
    this.#peer = signedBy.address;
    this.session = sessionKey(this.signer, signedBy.key, this.#nonce, msg.nonce);
    return { t: 'proof', from: this.signer.address, sig: this.signer.sign(linkDigest('peripheral', this.#nonce, msg.nonce, signedBy.address)) };
  }
}

/**
 * The central's side, for a peripheral it expects to be `expected` (the address it chose
 * from the advertisement): `receive(challenge)` gives its proof, `receive(proof)` binds.
 */
export class CentralHandshake {
  readonly #nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  #challenge: Uint8Array | null = null;
  #peer: Address | null = null;
  /** Once bound: the session key (see sessionKey). */
  session: Uint8Array | null = null;

  constructor(
    private readonly signer: Signer,
    private readonly expected: Address,
  ) {}

  get peer(): Address | null {
    return this.#peer;
  }

  /** The proof for a challenge; null once bound (the peripheral's proof arrived). Throws for anything else. */
  receive(msg: LinkMessage): LinkMessage | null {
    if (msg.t === 'challenge') {
      if (this.#challenge || !nonceOk(msg.nonce)) throw new MalformedMessageError('not a fresh challenge');
      this.#challenge = msg.nonce;
      return { t: 'proof', from: this.signer.address, nonce: this.#nonce, sig: this.signer.sign(linkDigest('central', msg.nonce, this.#nonce, this.expected)) };
    }
    if (!this.#challenge || this.#peer || !sigOk(msg.sig)) throw new MalformedMessageError('a proof out of turn');
    const signedBy = signerOf(msg.sig, linkDigest('peripheral', this.#challenge, this.#nonce, this.signer.address));
    if (signedBy === null || signedBy.address !== this.expected.toLowerCase()) throw new WrongPeerError(`the peripheral is not ${this.expected}`);
    this.#peer = signedBy.address;
    this.session = sessionKey(this.signer, signedBy.key, this.#challenge, this.#nonce);
    return null;
  }
}
