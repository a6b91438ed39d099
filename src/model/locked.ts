import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { AbiParameters, subAllocAbi } from './abi.ts';
import type { Bytes32, SubAlloc } from './types.ts';

// A state commits to its locked sub-allocations through a Merkle root, so that one
// virtual channel can be resolved on-chain with a log-size proof and its siblings never
// appear in calldata. Pairs are hashed in sorted order (no direction bits in proofs);
// an odd node moves up unchanged; the root of no entries is zero.

export const EMPTY_ROOT: Bytes32 = `0x${'00'.repeat(32)}`;

export function lockedLeaf(sub: SubAlloc): Uint8Array {
  const encoded = AbiParameters.encode(subAllocAbi, [sub.id, sub.balances, sub.indexMap]);
  return keccak_256(hexToBytes(encoded.slice(2)));
}

function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  const buf = new Uint8Array(64);
  const aFirst = compare(a, b) <= 0;
  buf.set(aFirst ? a : b, 0);
  buf.set(aFirst ? b : a, 32);
  return keccak_256(buf);
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function nextLevel(level: Uint8Array[]): Uint8Array[] {
  const up: Uint8Array[] = [];
  for (let i = 0; i < level.length; i += 2) up.push(i + 1 < level.length ? hashPair(level[i]!, level[i + 1]!) : level[i]!);
  return up;
}

export function lockedRoot(locked: readonly SubAlloc[]): Bytes32 {
  if (locked.length === 0) return EMPTY_ROOT;
  let level = locked.map(lockedLeaf);
  while (level.length > 1) level = nextLevel(level);
  return `0x${bytesToHex(level[0]!)}`;
}

/** The sibling hashes from entry `index` up to the root. */
export function lockedProof(locked: readonly SubAlloc[], index: number): Bytes32[] {
  if (index < 0 || index >= locked.length) throw new RangeError(`no locked entry ${index}`);
  const proof: Bytes32[] = [];
  let level = locked.map(lockedLeaf);
  let i = index;
  while (level.length > 1) {
    const sibling = i ^ 1;
    if (sibling < level.length) proof.push(`0x${bytesToHex(level[sibling]!)}`);
    level = nextLevel(level);
    i >>= 1;
  }
  return proof;
}

export function verifyLockedProof(root: Bytes32, sub: SubAlloc, proof: readonly Bytes32[]): boolean {
  let node = lockedLeaf(sub);
  for (const p of proof) node = hashPair(node, hexToBytes(p.slice(2)));
  return `0x${bytesToHex(node)}` === root;
}
