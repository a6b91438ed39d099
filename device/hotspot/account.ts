// One client's paying channel as the proxy sees it: its Meter, its open connections, and the traffic
// waiting for its next payment. Waiting traffic is not read from its source, so TCP
// backpressure pauses the sender; when no payment arrives within idleCutoffMs, every
// connection of the client is destroyed.
import type { Logger } from '../../src/log.ts';
import { CutOffError } from './errors.ts';
import { Meter, type Tariff } from './meter.ts';
import type { ServedLog } from './payments.ts';

interface Destroyable {
  destroy(): unknown;
}

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

export class ClientAccount {
  readonly client: string;
  /** The virtual channel that pays for this account's traffic. */
  readonly channel: string;
  readonly meter: Meter;
  readonly #servedLog: ServedLog | undefined;
  /** The end of the unit last written to the served log. */
  #savedUpTo: number;
  readonly #idleCutoffMs: number;
  readonly #log: Logger;
  readonly #connections = new Set<Destroyable>();
  readonly #waiters = new Set<Waiter>();
  #cutoffTimer: NodeJS.Timeout | undefined;
  #cutOffs = 0;

  constructor(client: string, channel: string, tariff: Pick<Tariff, 'unitBytes' | 'pricePerUnit'>, idleCutoffMs: number, log: Logger, servedLog?: ServedLog) {
    this.client = client;
    this.channel = channel;
    this.#servedLog = servedLog;
    this.#savedUpTo = servedLog?.served(channel) ?? 0;
    this.meter = new Meter(tariff, this.#savedUpTo);
    this.#idleCutoffMs = idleCutoffMs;
    this.#log = log;
  }

  get connections(): number {
    return this.#connections.size;
  }

  get cutOffs(): number {
    return this.#cutOffs;
  }

  /** Whether the client has connections open or traffic waiting for a payment. */
  get busy(): boolean {
    return this.#connections.size > 0 || this.#waiters.size > 0;
  }

  /**
   * Records a cumulative payment and wakes the waiting traffic. Only a payment that buys
   * a whole unit stops the cut-off clock, so dust-sized vouchers cannot hold sockets open.
   */
  credit(cumulative: bigint): void {
    if (!this.meter.credit(cumulative)) return;
    this.#stopCutoffClock();
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const waiter of waiters) waiter.resolve();
  }

  /** Resolves once some bytes are paid for and not yet served. */
  async allowanceAvailable(signal?: AbortSignal): Promise<void> {
    while (this.meter.allowance() === 0) await this.#nextPayment(signal);
  }

  /** Takes between 1 and `wanted` bytes of allowance, waiting for a payment while there is none. */
  async take(wanted: number, signal?: AbortSignal): Promise<number> {
    for (;;) {
      const n = Math.min(wanted, this.meter.allowance());
      if (n > 0) {
        this.#saveUnitEnd(this.meter.bytesServed + n);
        this.meter.consume(n);
        return n;
      }
      await this.#nextPayment(signal);
    }
  }

  /** Before serving up to `served`: the end of the unit it reaches is logged, once per unit. */
  #saveUnitEnd(served: number): void {
    if (!this.#servedLog || served <= this.#savedUpTo) return;
    const unit = this.meter.unitBytes;
    this.#savedUpTo = Math.ceil(served / unit) * unit;
    this.#servedLog.save(this.channel, this.#savedUpTo);
  }

  /** Registers a connection to destroy on cut-off; returns the function that forgets it. */
  attach(connection: Destroyable): () => void {
    this.#connections.add(connection);
    return () => this.#connections.delete(connection);
  }

  /** Destroys every connection of the client and fails the traffic waiting for a payment. */
  cutOff(): void {
    this.#stopCutoffClock();
    const reason = new CutOffError(this.client, this.#idleCutoffMs);
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const waiter of waiters) waiter.reject(reason);
    for (const connection of this.#connections) connection.destroy();
    this.#connections.clear();
  }

  #nextPayment(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.delete(waiter);
        if (this.#waiters.size === 0) this.#stopCutoffClock();
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(waiter);
      this.#cutoffTimer ??= setTimeout(() => this.#expire(), this.#idleCutoffMs);
    });
  }

  #expire(): void {
    this.#cutoffTimer = undefined;
    this.#cutOffs++;
    this.#log.info({ client: this.client, bytesServed: this.meter.bytesServed, unitsPaid: this.meter.unitsPaid }, 'no payment in time: client cut off');
    this.cutOff();
  }

  #stopCutoffClock(): void {
    clearTimeout(this.#cutoffTimer);
    this.#cutoffTimer = undefined;
  }
}

/**
 * A stream.pipeline stage that lets bytes through only as far as the client has paid.
 * While it waits for a payment it pulls nothing from its source. pipeline passes the
 * signal that stops the wait when the connection goes away.
 */
export function metered(account: ClientAccount) {
  return async function* (chunks: AsyncIterable<Buffer>, options?: { signal?: AbortSignal }): AsyncGenerator<Buffer> {
    const signal = options?.signal;
    for await (const chunk of chunks) {
      let rest = chunk;
      while (rest.length > 0) {
        const n = await account.take(rest.length, signal);
        yield rest.subarray(0, n);
        rest = rest.subarray(n);
      }
    }
  };
}
