import type { Address } from '../../src/model/types.ts';
import type { Transport, TransportHandler } from '../../src/transport/types.ts';
import { decodeMessage } from '../../src/wire/codec.ts';
import { MAX_MESSAGE_BYTES, MessageType } from '../../src/wire/messages.ts';
import { now } from './protocol.ts';

/** While tracing: when each message was handed to send() and when each arrived (absolute ms), and what was sent. */
export interface Trace {
  sent: number[];
  received: number[];
  /** Per message sent: its type's name and encoded size. */
  sentMessages: { type: string; bytes: number }[];
}

export const emptyTrace = (): Trace => ({ sent: [], received: [], sentMessages: [] });

const typeNames = new Map<number, string>(Object.entries(MessageType).map(([name, code]) => [code, name]));

function typeOf(frame: Uint8Array): string {
  const type = decodeMessage(frame, MAX_MESSAGE_BYTES).type;
  return typeNames.get(type) ?? String(type);
}

/**
 * A transport that counts what it sends, and remembers the last send so that a caller
 * of fire-and-forget Agent methods (payStream) can still wait for transport backpressure.
 * It can also trace when messages leave and arrive, to split a round trip into its parts.
 */
export class CountingTransport implements Transport {
  readonly self: Address;
  bytes = 0;
  messages = 0;
  trace: Trace | null = null;

  constructor(readonly inner: Transport) {
    this.self = inner.self;
  }

  send(to: Address, frame: Uint8Array): Promise<void> {
    this.bytes += frame.byteLength;
    this.messages++;
    if (this.trace) {
      this.trace.sent.push(now());
      this.trace.sentMessages.push({ type: typeOf(frame), bytes: frame.byteLength });
    }
    return this.inner.send(to, frame);
  }

  setHandler(handler: TransportHandler): void {
    this.inner.setHandler({
      ...handler,
      message: (from, frame) => {
        this.trace?.received.push(now());
        handler.message(from, frame);
      },
    });
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
