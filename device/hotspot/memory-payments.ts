// An in-memory payment layer for tests and demos: a payer's payUpTo reaches the hotspot
// as a 'paid' event, optionally late, or never once the payer is told to stop.
import { EventEmitter } from 'node:events';
import type { PaymentsIn, PaymentsOut, ServedLog } from './payments.ts';

export interface MemoryPayer extends PaymentsOut {
  /** The channel it pays from. */
  readonly channel: string;
  /** Vouchers sent (delivered or not). */
  readonly vouchers: number;
  /** Later vouchers are sent into the void: from the hotspot's view, the client stopped paying. */
  stop(): void;
}

/** The channel a test payer pays from unless told otherwise. */
export const MEMORY_CHANNEL = `0x${'c1'.repeat(32)}`;

export class MemoryPayments extends EventEmitter<{ paid: [client: string, channel: string, cumulative: bigint] }> implements PaymentsIn {
  readonly #credited = new Map<string, bigint>();
  readonly #delayMs: number;

  /** `delayMs`: how late each voucher arrives (0: on the next tick). */
  constructor(options: { delayMs?: number } = {}) {
    super();
    this.#delayMs = options.delayMs ?? 0;
  }

  credited(client: string, channel: string): bigint {
    return this.#credited.get(`${client.toLowerCase()}/${channel.toLowerCase()}`) ?? 0n;
  }

  payer(client: string, channel = MEMORY_CHANNEL): MemoryPayer {
    const address = client.toLowerCase();
    let vouchers = 0;
    let stopped = false;
    return {
      channel,
      get vouchers() {
        return vouchers;
      },
      stop: () => {
        stopped = true;
      },
      payUpTo: (cumulative) => {
        vouchers++;
        if (!stopped) setTimeout(() => this.#deliver(address, channel, cumulative), this.#delayMs);
      },
    };
  }

  // Like a stream payee: keep the highest voucher, ignore older ones overtaken in transit.
  #deliver(client: string, channel: string, cumulative: bigint): void {
    if (cumulative <= this.credited(client, channel)) return;
    this.#credited.set(`${client}/${channel}`, cumulative);
    this.emit('paid', client, channel, cumulative);
  }
}

/** A ServedLog in memory: what a hotspot that restarts with the same store would see. */
export class MemoryServedLog implements ServedLog {
  readonly #served = new Map<string, number>();

  served(channel: string): number {
    return this.#served.get(channel) ?? 0;
  }

  save(channel: string, bytes: number): void {
    this.#served.set(channel, bytes);
  }

  forget(channel: string): void {
    this.#served.delete(channel);
  }
}
