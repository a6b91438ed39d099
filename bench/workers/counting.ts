import type { Address } from '../../src/model/types.ts';
import type { Transport, TransportHandler } from '../../src/transport/types.ts';

/**
 * A transport that counts what it sends, and remembers the last send so that a caller
 * of fire-and-forget Agent methods (payStream) can still wait for transport backpressure.
 */
export class CountingTransport implements Transport {
  readonly self: Address;
  bytes = 0;
  messages = 0;
  /** The promise of the latest send(), never rejecting (the agent logs send errors itself). */
  lastSend: Promise<void> = Promise.resolve();

  constructor(readonly inner: Transport) {
    this.self = inner.self;
  }

  send(to: Address, frame: Uint8Array): Promise<void> {
    this.bytes += frame.byteLength;
    this.messages++;
    const sent = this.inner.send(to, frame);
    this.lastSend = sent.catch(() => undefined);
    return sent;
  }

  setHandler(handler: TransportHandler): void {
    this.inner.setHandler(handler);
  }

  watchPeer(peer: Address): void {
    this.inner.watchPeer?.(peer);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  resetCount(): void {
    this.bytes = 0;
    this.messages = 0;
  }
}
