// Pure accounting of one channel's paid-for bytes (no I/O). The hotspot holds a Meter per
// paying channel; the client runs the same arithmetic on its side through `unitsDue`.
import { ConfigError } from '../../src/errors.ts';
import { AllowanceExceededError } from './errors.ts';

/** The hotspot's count of bytes served on a channel, sent with a 402, so a client that lost some in flight pays on (client.ts). */
export const SERVED_HEADER = 'picopay-served';

/** 100 KB, the default unit a hotspot charges for. */
export const DEFAULT_UNIT_BYTES = 102_400;

export interface Tariff {
  /** Bytes in one unit. */
  readonly unitBytes: number;
  /** Price of one unit, in wei. */
  readonly pricePerUnit: bigint;
  /**
   * Units a client pays ahead of the bytes it has used. 1 means: the client never pays
   * for more than one unit ahead, and the hotspot serves at most one unit after the last
   * payment before it stops forwarding.
   */
  readonly prepaidUnits: number;
}

export function createTariff(options: { unitBytes?: number; pricePerUnit: bigint; prepaidUnits?: number }): Tariff {
  const { unitBytes = DEFAULT_UNIT_BYTES, pricePerUnit, prepaidUnits = 1 } = options;
  if (!Number.isSafeInteger(unitBytes) || unitBytes <= 0) throw new ConfigError(`unitBytes must be a positive integer, got ${unitBytes}`);
  if (pricePerUnit <= 0n) throw new ConfigError(`pricePerUnit must be positive, got ${pricePerUnit}`);
  // With 0 the client would wait for bytes before paying and the hotspot for a payment before serving.
  if (!Number.isSafeInteger(prepaidUnits) || prepaidUnits < 1) throw new ConfigError(`prepaidUnits must be an integer >= 1, got ${prepaidUnits}`);
  return { unitBytes, pricePerUnit, prepaidUnits };
}

/**
 * Units a client should have paid for once it has used `bytesUsed` bytes: every completed
 * unit plus `prepaidUnits` ahead. So what it has paid for exceeds what it has used by more
 * than (prepaidUnits - 1) units and by at most prepaidUnits units.
 */
export function unitsDue(tariff: Pick<Tariff, 'unitBytes' | 'prepaidUnits'>, bytesUsed: number): number {
  return Math.floor(bytesUsed / tariff.unitBytes) + tariff.prepaidUnits;
}

/** The hotspot's account of one client: bytes may be served only once paid for. */
export class Meter {
  readonly unitBytes: number;
  readonly pricePerUnit: bigint;
  #paid = 0n;
  #bytesServed = 0;

  /** `served`: bytes already served before (a restart resumes the count). */
  constructor(tariff: Pick<Tariff, 'unitBytes' | 'pricePerUnit'>, served = 0) {
    this.unitBytes = tariff.unitBytes;
    this.pricePerUnit = tariff.pricePerUnit;
    this.#bytesServed = served;
  }

  /** Highest cumulative amount credited, in wei. */
  get paid(): bigint {
    return this.#paid;
  }

  /** Whole units paid for; a remainder below the price buys nothing yet. */
  get unitsPaid(): number {
    return Number(this.#paid / this.pricePerUnit);
  }

  get bytesServed(): number {
    return this.#bytesServed;
  }

  /**
   * Records a cumulative payment. Payments only grow (an older, lower voucher arriving
   * late changes nothing). Returns whether it bought at least one more unit.
   */
  credit(cumulative: bigint): boolean {
    if (cumulative <= this.#paid) return false;
    const unitsBefore = this.unitsPaid;
    this.#paid = cumulative;
    return this.unitsPaid > unitsBefore;
  }

  /** Bytes that may still be served: unitsPaid * unitBytes - bytesServed. */
  allowance(): number {
    const left = BigInt(this.unitsPaid) * BigInt(this.unitBytes) - BigInt(this.#bytesServed);
    return left > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(left);
  }

  /** Records `n` bytes served; refuses (and changes nothing) beyond the allowance. */
  consume(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`cannot consume ${n} bytes`);
    const allowance = this.allowance();
    if (n > allowance) throw new AllowanceExceededError(n, allowance);
    this.#bytesServed += n;
  }
}
