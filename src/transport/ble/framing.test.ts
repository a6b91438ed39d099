import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FragmentError, MessageTooLargeError, WireError } from '../../errors.ts';
import { MAX_MESSAGE_BYTES } from '../../wire/messages.ts';
import { fragment, MAX_MTU, MIN_MTU, Reassembler } from './framing.ts';

const mtus = fc.integer({ min: MIN_MTU, max: MAX_MTU });
const message = (max = MAX_MESSAGE_BYTES) => fc.uint8Array({ minLength: 0, maxLength: max });

/** Pushes every fragment; the messages delivered and the errors raised, in order. */
function feed(r: Reassembler, frames: Uint8Array[]): { messages: Uint8Array[]; errors: unknown[] } {
  const messages: Uint8Array[] = [];
  const errors: unknown[] = [];
  for (const frame of frames) {
    try {
      const m = r.push(frame);
      if (m) messages.push(m);
    } catch (err) {
      errors.push(err);
    }
  }
  return { messages, errors };
}

describe('BLE framing', () => {
  it('any message up to the limit, at every MTU from 23 to 517, comes back whole, each fragment within one ATT packet', () => {
    fc.assert(
      fc.property(message(), mtus, fc.integer({ min: 0, max: 1000 }), (m, mtu, seq) => {
        const frames = fragment(m, seq, mtu);
        for (const f of frames) expect(f.length).toBeLessThanOrEqual(mtu - 3);
        const { messages, errors } = feed(new Reassembler(MAX_MESSAGE_BYTES), frames);
        expect(errors).toEqual([]);
        expect(messages).toEqual([m]);
      }),
      { numRuns: 300 },
    );
  });

  it('every MTU in turn carries a 2 KB message', () => {
    const m = Uint8Array.from({ length: 2048 }, (_, i) => i & 0xff);
    for (let mtu = MIN_MTU; mtu <= MAX_MTU; mtu++) expect(feed(new Reassembler(MAX_MESSAGE_BYTES), fragment(m, mtu, mtu)).messages).toEqual([m]);
  });

  it('after an MTU of 247 a voucher or an update (up to 230 bytes) is one packet', () => {
    fc.assert(
      fc.property(message(230), fc.integer({ min: 247, max: MAX_MTU }), (m, mtu) => {
        expect(fragment(m, 1, mtu)).toHaveLength(1);
      }),
    );
  });

  it('messages in a row, over one reassembler, all come back in order', () => {
    fc.assert(
      fc.property(fc.array(message(3000), { minLength: 1, maxLength: 8 }), mtus, (ms, mtu) => {
        const r = new Reassembler(MAX_MESSAGE_BYTES);
        expect(feed(r, ms.flatMap((m, i) => fragment(m, i, mtu))).messages).toEqual(ms);
        expect(r.pending).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it('a fragment lost, repeated or cut short: a typed error (or the loss reported), no wrong message, and the next message comes through', () => {
    const fault = fc.constantFrom('drop' as const, 'duplicate' as const, 'truncate' as const, 'swap' as const);
    fc.assert(
      fc.property(message(4000), message(500), mtus, fault, fc.nat(), (a, b, mtu, kind, at) => {
        const frames = fragment(a, 1, mtu);
        const i = at % frames.length;
        const broken = [...frames];
        if (kind === 'drop') broken.splice(i, 1);
        if (kind === 'duplicate') broken.splice(i, 0, frames[i]!);
        if (kind === 'truncate') broken[i] = frames[i]!.subarray(0, Math.max(0, frames[i]!.length - 1 - (at % 3)));
        if (kind === 'swap' && i + 1 < frames.length) [broken[i], broken[i + 1]] = [frames[i + 1]!, frames[i]!];
        const lost: FragmentError[] = [];
        const r = new Reassembler(MAX_MESSAGE_BYTES, (err) => lost.push(err));
        // A message before: a lost whole is told by the sequence number it skips.
        const before = feed(r, fragment(new Uint8Array([7]), 0, mtu));
        expect(before.messages).toHaveLength(1);
        const { messages, errors } = feed(r, [...broken, ...fragment(b, 2, mtu)]);
        for (const err of errors) expect(err).toBeInstanceOf(WireError);
        // Never a wrong message: a's bytes whole, or not at all; b always.
        expect(messages.at(-1)).toEqual(b);
        for (const m of messages.slice(0, -1)) expect(m).toEqual(a);
        const unchanged = broken.length === frames.length && broken.every((f, k) => f === frames[k]);
        if (!unchanged && !messages.slice(0, -1).length) expect(errors.length + lost.length).toBeGreaterThan(0);
      }),
      { numRuns: 400 },
    );
  });

  it('refuses a length above its limit at the first fragment, before taking any of it', () => {
    const r = new Reassembler(1000);
    const frames = fragment(new Uint8Array(5000), 3, 100);
    expect(() => r.push(frames[0]!)).toThrow(MessageTooLargeError);
    expect(r.pending).toBe(0);
    // The rest of it finds no message under way.
    expect(() => r.push(frames[1]!)).toThrow(FragmentError);
    expect(feed(r, fragment(new Uint8Array(10), 4, 100)).messages).toEqual([new Uint8Array(10)]);
  });

  it('refuses a message longer or shorter than it announced, and garbage', () => {
    const r = new Reassembler(MAX_MESSAGE_BYTES);
    const [first] = fragment(new Uint8Array(10), 5, 100);
    // The first fragment says 10 bytes and ends (last flag) with 10: a copy that says 9 is refused.
    const liar = first!.slice();
    liar[1] = 9;
    expect(() => r.push(liar)).toThrow(FragmentError);
    expect(() => r.push(new Uint8Array([0x80]))).toThrow(FragmentError);
    expect(() => r.push(new Uint8Array([0x80, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(WireError);
    expect(r.pending).toBe(0);
  });

  it('refuses an MTU outside 8..517 (below 23: what a backend leaves of the smallest BLE MTU)', () => {
    expect(() => fragment(new Uint8Array(1), 0, 7)).toThrow(RangeError);
    expect(() => fragment(new Uint8Array(1), 0, 518)).toThrow(RangeError);
  });

  it('refuses an empty later fragment: a message of n bytes holds at most n + 1 fragments, so memory stays bounded', () => {
    const r = new Reassembler(1000);
    expect(r.push(new Uint8Array([0x80, 10, 0]))).toBeNull();
    expect(() => r.push(new Uint8Array([0, 1]))).toThrow(FragmentError);
    expect(r.pending).toBe(0);
  });
});
