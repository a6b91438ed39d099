// An in-memory payment layer for tests and demos: a payer's payUpTo reaches the hotspot
// as a 'paid' event, optionally late, or never once the payer is told to stop.
import { EventEmitter } from 'node:events';
import type { PaymentsIn, PaymentsOut } from './payments.ts';

export interface MemoryPayer extends PaymentsOut {
  /** Vouchers sent (delivered or not). */
  readonly vouchers: number;
  /** Later vouchers are sent into the void: from the hotspot's view, the client stopped paying. */
  stop(): void;
}

export class MemoryPayments extends EventEmitter<{ paid: [client: string, cumulative: bigint] }> implements PaymentsIn {
  readonly #credited = new Map<string, bigint>();
  readonly #delayMs: number;

  /** `delayMs`: how late each voucher arrives (0: on the next tick). */
  constructor(options: { delayMs?: number } = {}) {
    super();
    this.#delayMs = options.delayMs ?? 0;
  }

  credited(client: string): bigint {
    return this.#credited.get(client.toLowerCase()) ?? 0n;
  }

  payer(client: string): MemoryPayer {
    const address = client.toLowerCase();
    let vouchers = 0;
    let stopped = false;
    return {
      get vouchers() {
        return vouchers;
      },
      stop: () => {
        stopped = true;
      },
      payUpTo: (cumulative) => {
        vouchers++;
        if (!stopped) setTimeout(() => this.#deliver(address, cumulative), this.#delayMs);
      },
    };
  }

  // Like a stream payee: keep the highest voucher, ignore older ones overtaken in transit.
  #deliver(client: string, cumulative: bigint): void {
    if (cumulative <= this.credited(client)) return;
    this.#credited.set(client, cumulative);
    this.emit('paid', client, cumulative);
  }
}
