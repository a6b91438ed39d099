import { ConservationError, InvalidAllocationError, NegativeBalanceError } from '../errors.ts';
import type { Allocation, SubAlloc } from './types.ts';

const UINT256_MAX = (1n << 256n) - 1n;

/**
 * How many virtual channels one ledger channel funds at once. It bounds every state,
 * record and message that carries the locked list (a fund request carries it whole).
 */
export const MAX_LOCKED = 32;

/** Assets per allocation; the adjudicator refuses outcomes with more (its MAX_ASSETS). */
export const MAX_ASSETS = 8;

/**
 * Shape and range checks, the adjudicator's and more: 1 to MAX_ASSETS distinct assets, one
 * balance pair and one locked entry per asset, 0 ≤ x < 2^256.
 */
export function assertWellFormed(a: Allocation): void {
  if (a.assets.length === 0) throw new InvalidAllocationError('allocation has no assets');
  if (a.assets.length > MAX_ASSETS) throw new InvalidAllocationError(`more than ${MAX_ASSETS} assets`);
  if (new Set(a.assets).size !== a.assets.length) throw new InvalidAllocationError('duplicate asset');
  if (a.balances.length !== a.assets.length) throw new InvalidAllocationError('one balance pair per asset required');
  const checkAmount = (x: bigint): void => {
    if (x < 0n) throw new NegativeBalanceError('negative balance');
    if (x > UINT256_MAX) throw new InvalidAllocationError('balance above uint256');
  };
  for (const pair of a.balances) {
    if (pair.length !== 2) throw new InvalidAllocationError('balances must have two entries');
    pair.forEach(checkAmount);
  }
  if (a.locked.length > MAX_LOCKED) throw new InvalidAllocationError(`more than ${MAX_LOCKED} locked sub-allocations`);
  const ids = new Set<string>();
  for (const l of a.locked) {
    if (ids.has(l.id)) throw new InvalidAllocationError('duplicate locked id');
    ids.add(l.id);
    if (l.balances.length !== a.assets.length) throw new InvalidAllocationError('locked balances must cover every asset');
    l.balances.forEach(checkAmount);
    const [i0, i1] = l.indexMap;
    if (!((i0 === 0 && i1 === 1) || (i0 === 1 && i1 === 0) || (i0 === i1 && (i0 === 0 || i0 === 1)))) {
      throw new InvalidAllocationError('indexMap entries must be 0 or 1');
    }
  }
}

/** Per-asset total of free and locked funds. */
export function totals(a: Allocation): bigint[] {
  return a.assets.map((_, i) => {
    let sum = a.balances[i]![0] + a.balances[i]![1];
    for (const l of a.locked) sum += l.balances[i]!;
    return sum;
  });
}

/** A new allocation must hold the same assets, in the same order, with the same totals. */
export function assertConserved(prev: Allocation, next: Allocation): void {
  if (prev.assets.length !== next.assets.length || prev.assets.some((x, i) => x !== next.assets[i])) {
    throw new ConservationError('assets changed');
  }
  const a = totals(prev);
  const b = totals(next);
  if (a.some((x, i) => x !== b[i])) throw new ConservationError('totals per asset changed');
}

/** Moves `amount` of asset `asset` from participant `from` to the other one. */
export function transfer(a: Allocation, from: 0 | 1, amount: bigint, asset = 0): Allocation {
  const pair = a.balances[asset];
  if (!pair) throw new InvalidAllocationError(`no asset ${asset}`);
  if (amount < 0n) throw new NegativeBalanceError('negative amount');
  if (pair[from] < amount) throw new NegativeBalanceError('balance too low');
  const next: [bigint, bigint] = [pair[0], pair[1]];
  const to = from === 0 ? 1 : 0;
  next[from] -= amount;
  next[to] += amount;
  return { ...a, balances: a.balances.map((p, i) => (i === asset ? next : p)) };
}

/** Whether two locks hold the same funds of the same virtual channel, mapped onto the same participants. */
export function sameLock(a: SubAlloc, b: SubAlloc): boolean {
  return (
    a.id === b.id &&
    a.balances.length === b.balances.length &&
    a.balances.every((x, i) => x === b.balances[i]) &&
    a.indexMap[0] === b.indexMap[0] &&
    a.indexMap[1] === b.indexMap[1]
  );
}
