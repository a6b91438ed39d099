import type { ChannelRecord } from '../channel/record.ts';
import type { Bytes32 } from '../model/types.ts';
import type { ChannelStorage } from '../store/types.ts';

/** Something waiting on a write: it fails if the write does. */
export interface Waiting {
  reject(e: unknown): void;
}

/**
 * Group commit with send-after-commit. Every record written in one turn of the event
 * loop, on any channel, lands in one transaction (one fsync, unless every write of the
 * turn may skip it); only then run the actions queued behind them: messages leaving,
 * events, requests resolving. Under load a gateway pays one fsync for many devices'
 * updates, and nothing leaves that is not stored.
 */
export class Outbox {
  #batch: { writes: Map<Bytes32, { rec: ChannelRecord; durable: boolean }>; after: (() => void)[]; waiting: Waiting[] } | null = null;

  /** `failed` is told of a write that did not land, with what was waiting on it. */
  constructor(
    private readonly store: ChannelStorage,
    private readonly failed: (err: unknown, waiting: readonly Waiting[]) => void,
  ) {}

  /** Opens this turn's batch, if none is open: what follows waits for its write. */
  open(): void {
    if (this.#batch) return;
    this.#batch = { writes: new Map(), after: [], waiting: [] };
    queueMicrotask(() => this.flush());
  }

  /** Adds `rec` to this turn's batch (the last write of a channel wins; durable if any was). */
  write(rec: ChannelRecord, durable: boolean): void {
    this.open();
    const earlier = this.#batch!.writes.get(rec.id);
    this.#batch!.writes.set(rec.id, { rec, durable: durable || (earlier?.durable ?? false) });
  }

  /** Runs `fn` once everything written so far is stored (at once when nothing waits). */
  after(fn: () => void): void {
    if (this.#batch) this.#batch.after.push(fn);
    else fn();
  }

  /** `w` fails instead of succeeding if this turn's write fails. */
  waitOn(w: Waiting): void {
    this.#batch?.waiting.push(w);
  }

  /** Writes the open batch now, then runs what waited for it. */
  flush(): void {
    const batch = this.#batch;
    if (!batch) return;
    this.#batch = null;
    const writes = [...batch.writes.values()];
    try {
      this.store.saveChannels(
        writes.map((w) => w.rec),
        writes.some((w) => w.durable),
      );
    } catch (err) {
      this.failed(err, batch.waiting);
      return;
    }
    for (const fn of batch.after) fn();
  }
}
