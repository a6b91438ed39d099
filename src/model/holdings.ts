import { totals } from './allocation.ts';
import type { Allocation } from './types.ts';

// The adjudicator's holdings slot (contracts/Adjudicator.sol), read the same way by the
// gateway (viem) and by devices (plain JSON-RPC).

/** Bit 255 of a holdings slot marks a concluded channel. */
const CONCLUDED = 1n << 255n;

export interface Holdings {
  /** Deposited and not paid out; 0 once concluded (see `readSettled` for what a parent keeps). */
  amount: bigint;
  concluded: boolean;
}

export function decodeHoldings(raw: bigint): Holdings {
  return raw >= CONCLUDED ? { amount: 0n, concluded: true } : { amount: raw, concluded: false };
}

/** Whether deposits (one per asset of `outcome`) cover what the channel's outcome holds. */
export function depositsCover(outcome: Allocation, held: readonly Holdings[]): boolean {
  const need = totals(outcome);
  return held.every((h, i) => !h.concluded && h.amount >= need[i]!);
}

/**
 * Whether deposits cover participant `idx`'s side of `outcome` in every asset: what a
 * gateway waits for before it deposits its own side after the device's.
 */
export function sideCovered(outcome: Allocation, held: readonly Holdings[], idx: 0 | 1): boolean {
  return held.every((h, i) => !h.concluded && h.amount >= outcome.balances[i]![idx]!);
}
