export interface BackoffOptions {
  /** Delay before the first retry, in ms (default 250). */
  initialMs?: number;
  /** Upper bound of the delay, in ms (default 30,000). */
  maxMs?: number;
  /** Growth per failed attempt (default 2). */
  factor?: number;
  /** Fraction of random spread around each delay (default 0.2), so that devices cut off together do not all retry together. */
  jitter?: number;
}

/** Exponential backoff: initialMs, initialMs × factor, … up to maxMs, until reset. */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = options.initialMs ?? 250;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter ?? 0.2;
  }

  /** The delay before the next attempt; each call counts as one more failure. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt++;
    const spread = 1 + this.jitter * (2 * this.random() - 1);
    return Math.max(1, Math.round(base * spread));
  }

  reset(): void {
    this.attempt = 0;
  }
}
