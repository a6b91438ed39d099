import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EMPTY_ROOT, lockedProof, lockedRoot, verifyLockedProof } from './locked.ts';
import type { SubAlloc } from './types.ts';

const sub = (i: number, amount = 1n): SubAlloc => ({ id: `0x${i.toString(16).padStart(64, '0')}`, balances: [amount], indexMap: [0, 1] });

describe('locked Merkle root', () => {
  it('is zero for no entries and the leaf for one', () => {
    expect(lockedRoot([])).toBe(EMPTY_ROOT);
    expect(lockedProof([sub(1)], 0)).toEqual([]);
    expect(verifyLockedProof(lockedRoot([sub(1)]), sub(1), [])).toBe(true);
  });

  it('proves every entry and nothing else, for any size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.nat(), (n, pick) => {
        const list = Array.from({ length: n }, (_, i) => sub(i + 1, BigInt(i)));
        const root = lockedRoot(list);
        const i = pick % n;
        const proof = lockedProof(list, i);
        expect(proof.length).toBeLessThanOrEqual(Math.ceil(Math.log2(n)));
        expect(verifyLockedProof(root, list[i]!, proof)).toBe(true);
        expect(verifyLockedProof(root, { ...list[i]!, balances: [999n] }, proof)).toBe(false);
        expect(verifyLockedProof(root, sub(1000), proof)).toBe(false);
      }),
    );
  });
});
