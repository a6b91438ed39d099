// Messages over a BLE link: each is cut into fragments that fit one ATT packet (the
// negotiated MTU less the 3-byte ATT header) and put back together on the other side.
// A fragment starts with one byte: bit 7 first, bit 6 last, bits 0-5 the message's
// sequence number (mod 64). A first fragment then carries the message's length, a later
// one its index, both as unsigned LEB128. After an MTU of 247 or more, a voucher or an
// update (under 230 bytes) is one packet. The reassembler keeps one message at a time,
// refuses a length above its limit before taking any of it, and answers a fragment that
// does not follow (lost, repeated, out of order, cut short) with a FragmentError, ready
// for the next message; a message whose last fragments were lost is reported when the
// next one begins, and so are messages lost whole (their sequence numbers are skipped).
import { FragmentError, MessageTooLargeError } from '../../errors.ts';

/** The smallest ATT MTU BLE allows; what a link has before negotiating. */
export const MIN_MTU = 23;
/** The smallest MTU fragment() takes: room for a header of up to 4 bytes and 1 byte of data. */
const SMALLEST_MTU = 8;
/** The largest ATT MTU. */
export const MAX_MTU = 517;
const ATT_HEADER = 3;
const FIRST = 0x80;
const LAST = 0x40;
const SEQUENCE = 0x3f;

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

/** A LEB128 number at `at`, with where it ends; undefined if cut short or over 4 bytes. */
function readVarint(bytes: Uint8Array, at: number): { value: number; end: number } | undefined {
  let value = 0;
  for (let i = 0; i < 4 && at + i < bytes.length; i++) {
    const byte = bytes[at + i]!;
    value += (byte & 0x7f) * 128 ** i;
    if ((byte & 0x80) === 0) return { value, end: at + i + 1 };
  }
  return undefined;
}

/** Cuts `message` (sequence number `sequence`) into fragments of at most `mtu - 3` bytes each. */
export function fragment(message: Uint8Array, sequence: number, mtu: number): Uint8Array[] {
  // Below BLE's minimum too: a backend may keep a byte or two of each packet for itself.
  if (!Number.isInteger(mtu) || mtu < SMALLEST_MTU || mtu > MAX_MTU) throw new RangeError(`MTU must be between ${SMALLEST_MTU} and ${MAX_MTU}, got ${mtu}`);
  const room = mtu - ATT_HEADER;
  const seq = sequence & SEQUENCE;
  const out: Uint8Array[] = [];
  let offset = 0;
  for (let index = 0; offset < message.length || index === 0; index++) {
    const head = index === 0 ? [FIRST | seq, ...varint(message.length)] : [seq, ...varint(index)];
    const take = Math.min(room - head.length, message.length - offset);
    const frame = new Uint8Array(head.length + take);
    frame.set(head);
    frame.set(message.subarray(offset, offset + take), head.length);
    offset += take;
    if (offset >= message.length) frame[0] = frame[0]! | LAST;
    out.push(frame);
  }
  return out;
}

/** Puts fragments back into messages, one message at a time, within `maxMessageBytes`. */
export class Reassembler {
  #current: { sequence: number; length: number; next: number; parts: Uint8Array[]; received: number } | null = null;
  /** The sequence number of the last message begun: one that skips numbers says messages were lost whole. */
  #last: number | undefined;

  /** `onLost`: a message under way was dropped because the next one began (its last fragments were lost). */
  constructor(
    private readonly maxMessageBytes: number,
    private readonly onLost: (err: FragmentError) => void = () => {},
  ) {}

  /** Bytes held for the message under way (bounded by maxMessageBytes). */
  get pending(): number {
    return this.#current?.received ?? 0;
  }

  /**
   * Takes one fragment; returns the message it completes, or null. Throws FragmentError or
   * MessageTooLargeError for a fragment that cannot be taken: the message under way is
   * dropped, and the next first fragment starts afresh.
   */
  push(frame: Uint8Array): Uint8Array | null {
    if (frame.length < 2) return this.#fail('a fragment of less than 2 bytes');
    const flags = frame[0]!;
    const sequence = flags & SEQUENCE;
    const head = readVarint(frame, 1);
    if (!head) return this.#fail('a fragment header cut short');
    const data = frame.subarray(head.end);
    if (flags & FIRST) {
      const cut = this.#current;
      this.#current = null;
      if (cut) this.onLost(new FragmentError(`message ${cut.sequence} ended after ${cut.received} of ${cut.length} bytes: the next one began`));
      else if (this.#last !== undefined && sequence !== ((this.#last + 1) & SEQUENCE)) this.onLost(new FragmentError(`message ${sequence} came after ${this.#last}: those between were lost`));
      this.#last = sequence;
      if (head.value > this.maxMessageBytes) throw new MessageTooLargeError(head.value, this.maxMessageBytes);
      this.#current = { sequence, length: head.value, next: 1, parts: [], received: 0 };
    } else {
      const current = this.#current;
      if (!current) return this.#fail('a fragment with no first fragment before it');
      if (sequence !== current.sequence || head.value !== current.next) return this.#fail(`fragment ${head.value} of message ${sequence} where fragment ${current.next} of message ${current.sequence} was due`);
      // Each later fragment carries data: a message of n bytes has at most n + 1 fragments, so what it holds stays bounded.
      if (data.length === 0) return this.#fail(`an empty fragment ${head.value} of message ${sequence}`);
      current.next++;
    }
    this.#take(data);
    const current = this.#current!;
    if (current.received > current.length) return this.#fail(`a message longer than the ${current.length} bytes it announced`);
    if (!(flags & LAST)) return null;
    if (current.received !== current.length) return this.#fail(`a message of ${current.received} bytes that announced ${current.length}`);
    this.#current = null;
    const message = new Uint8Array(current.length);
    let at = 0;
    for (const part of current.parts) {
      message.set(part, at);
      at += part.length;
    }
    return message;
  }

  #take(data: Uint8Array): void {
    const current = this.#current!;
    current.parts.push(data.slice());
    current.received += data.length;
  }

  #fail(reason: string): never {
    this.#current = null;
    throw new FragmentError(reason);
  }
}
