import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { currentLockedProof, currentLockedRoot } from '../../src/chain/lockedTree.ts';
import { lockedProof, lockedRoot, verifyLockedProof } from '../../src/model/locked.ts';
import type { SubAlloc } from '../../src/model/types.ts';

const sub = (i: number): SubAlloc => ({ id: `0x${(i + 1).toString(16).padStart(64, '0')}`, balances: [BigInt(i)], indexMap: [0, 1] });

describe('locked tree after releases', () => {
  it('equals src/model before any release', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.nat(), (n, pick) => {
        const list = Array.from({ length: n }, (_, i) => sub(i));
        expect(currentLockedRoot(list)).toBe(lockedRoot(list));
        expect(currentLockedProof(list, pick % n)).toEqual(lockedProof(list, pick % n));
      }),
    );
  });

  it('proves every unreleased entry against the root with released leaves zeroed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 30 }), fc.array(fc.nat()), fc.nat(), (n, releases, pick) => {
        const list = Array.from({ length: n }, (_, i) => sub(i));
        const released = new Set(releases.map((r) => list[r % n]!.id));
        const open = list.map((s, i) => i).filter((i) => !released.has(list[i]!.id));
        if (open.length === 0) return;
        const i = open[pick % open.length]!;
        expect(verifyLockedProof(currentLockedRoot(list, released), list[i]!, currentLockedProof(list, i, released))).toBe(true);
      }),
    );
  });
});
