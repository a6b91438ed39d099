// The parent's locked Merkle tree as the contract sees it after releases: a released
// sub-allocation's leaf is zeroed on-chain, so later proofs must be built over the same
// zeroed leaves. Same tree shape as src/model/locked.ts (sorted pairs, odd node promoted).
import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { lockedLeaf } from '../model/locked.ts';
import type { Bytes32, SubAlloc } from '../model/types.ts';

const RELEASED_LEAF = new Uint8Array(32);

function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  const buf = new Uint8Array(64);
  const aFirst = Buffer.compare(a, b) <= 0;
  buf.set(aFirst ? a : b, 0);
  buf.set(aFirst ? b : a, 32);
  return keccak_256(buf);
}

function up(level: Uint8Array[]): Uint8Array[] {
  const next: Uint8Array[] = [];
  for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? hashPair(level[i]!, level[i + 1]!) : level[i]!);
  return next;
}

function leaves(locked: readonly SubAlloc[], released: ReadonlySet<string>): Uint8Array[] {
  return locked.map((sub) => (released.has(sub.id.toLowerCase()) ? RELEASED_LEAF : lockedLeaf(sub)));
}

const hex = (b: Uint8Array): Bytes32 => `0x${bytesToHex(b)}`;

/** The root the contract holds after the sub-allocations in `released` were released. */
export function currentLockedRoot(locked: readonly SubAlloc[], released: ReadonlySet<string> = new Set()): Bytes32 {
  if (locked.length === 0) return hex(new Uint8Array(32));
  let level = leaves(locked, released);
  while (level.length > 1) level = up(level);
  return hex(level[0]!);
}

/** The proof for entry `index` against `currentLockedRoot(locked, released)`. */
export function currentLockedProof(locked: readonly SubAlloc[], index: number, released: ReadonlySet<string> = new Set()): Bytes32[] {
  if (index < 0 || index >= locked.length) throw new RangeError(`no locked entry ${index}`);
  const proof: Bytes32[] = [];
  let level = leaves(locked, released);
  let i = index;
  while (level.length > 1) {
    const sibling = i ^ 1;
    if (sibling < level.length) proof.push(hex(level[sibling]!));
    level = up(level);
    i >>= 1;
  }
  return proof;
}
