import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MessageTooLargeError, PicopayError, UnsupportedVersionError, WireError } from '../errors.ts';
import { decodeMessage, encodeMessage } from './codec.ts';
import { MAX_ASSETS, MAX_LOCKED } from '../model/allocation.ts';
import { MAX_MESSAGE_BYTES, type Message, MessageType, RejectReason } from './messages.ts';

const bytesN = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const hex = (n: number) => bytesN(n).map((b) => `0x${Buffer.from(b).toString('hex')}` as `0x${string}`);
const u256 = fc.bigInt({ min: 0n, max: (1n << 256n) - 1n });
const amount = fc.oneof(fc.bigInt({ min: 0n, max: 10n ** 24n }), u256);
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const pair = fc.tuple(amount, amount);
const reason = fc.constantFrom(...Object.values(RejectReason));
const body = fc.record({
  version: u64,
  balances: fc.array(pair, { minLength: 1, maxLength: 3 }),
  locked: fc.array(
    fc.record({
      id: hex(32),
      balances: fc.array(amount, { minLength: 1, maxLength: 3 }),
      indexMap: fc.constantFrom([0, 1] as const, [1, 0] as const),
    }),
    { maxLength: 4 },
  ),
  isFinal: fc.boolean(),
});

export const arbitraryMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    type: fc.constant(MessageType.OpenPropose),
    share: bytesN(32),
    challengeDuration: u64,
    kind: fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>,
    assets: fc.array(hex(20), { minLength: 2, maxLength: 2 }),
    balances: fc.array(pair, { minLength: 2, maxLength: 2 }),
    sig: bytesN(65),
    gateway: fc.option(hex(20), { nil: null }),
  }),
  fc.record({ type: fc.constant(MessageType.OpenAccept), shareA: bytesN(32), shareB: bytesN(32), sig: bytesN(65) }),
  fc.record({ type: fc.constant(MessageType.OpenReject), shareA: bytesN(32), reason, sig: bytesN(65) }),
  body.chain((b) => fc.record({ type: fc.constant(MessageType.Update), alias: bytesN(8), sig: bytesN(65) }).map((m) => ({ ...b, ...m }))),
  fc.record({ type: fc.constant(MessageType.UpdateAccept), alias: bytesN(8), version: u64, sig: bytesN(65) }),
  fc.record({ type: fc.constant(MessageType.UpdateReject), alias: bytesN(8), version: u64, reason, sig: bytesN(65) }),
  fc.record({
    type: fc.constant(MessageType.Sync),
    alias: bytesN(8),
    current: body.chain((b) => fc.tuple(bytesN(65), bytesN(65)).map((sigs) => ({ ...b, sigs }))),
    staged: fc.option(body.chain((b) => bytesN(65).map((sig) => ({ ...b, sig }))), { nil: null }),
  }),
  body.chain((b) =>
    fc
      .record({
        type: fc.constant(MessageType.FundRequest),
        alias: bytesN(8),
        sig: bytesN(65),
        vc: fc.record({
          peer: hex(20),
          index: fc.constantFrom(0, 1) as fc.Arbitrary<0 | 1>,
          challengeDuration: u64,
          nonce: u256,
          kind: fc.constantFrom(1, 2) as fc.Arbitrary<1 | 2>,
          balances: fc.array(pair, { minLength: 1, maxLength: 2 }),
          sig: fc.option(bytesN(65), { nil: null }),
        }),
      })
      .map((m) => ({ ...b, ...m })),
  ),
  body.chain((b) =>
    fc
      .record({
        type: fc.constant(MessageType.SettleRequest),
        alias: bytesN(8),
        sig: bytesN(65),
        vc: fc.record({ id: bytesN(32), version: u64, balances: fc.array(pair, { minLength: 1, maxLength: 2 }), sigs: fc.tuple(bytesN(65), bytesN(65)) }),
      })
      .map((m) => ({ ...b, ...m })),
  ),
  body.chain((b) =>
    fc
      .record({ type: fc.constant(MessageType.ClaimRequest), alias: bytesN(8), sig: bytesN(65), vc: fc.record({ id: bytesN(32), cumulative: amount, sig: bytesN(65) }) })
      .map((m) => ({ ...b, ...m })),
  ),
  fc.record({ type: fc.constant(MessageType.Voucher), alias: bytesN(8), cumulative: amount, sig: bytesN(65) }),
  fc.record({ type: fc.constant(MessageType.VoucherAck), alias: bytesN(8), cumulative: amount }),
  fc.record({ type: fc.constant(MessageType.CloseRequest), alias: bytesN(8), cumulative: fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }), sig: bytesN(65) }),
) as fc.Arbitrary<Message>;

function expectTypedOrDecoded(frame: Uint8Array): void {
  try {
    decodeMessage(frame);
  } catch (err) {
    expect(err).toBeInstanceOf(WireError);
  }
}

describe('wire codec', () => {
  it('the largest message the schema allows fits the default size limit', () => {
    const max = (1n << 256n) - 1n;
    const sig = new Uint8Array(65).fill(0xff);
    const body = {
      version: (1n << 64n) - 1n,
      balances: Array.from({ length: MAX_ASSETS }, () => [max, max] as const),
      locked: Array.from({ length: MAX_LOCKED }, (_, i) => ({ id: `0x${i.toString(16).padStart(64, 'f')}` as const, balances: Array.from({ length: MAX_ASSETS }, () => max), indexMap: [0, 1] as const })),
      isFinal: false,
    };
    const sync = encodeMessage({ type: MessageType.Sync, alias: new Uint8Array(8), current: { ...body, sigs: [sig, sig] }, staged: { ...body, sig } });
    expect(sync.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(decodeMessage(sync)).toMatchObject({ type: MessageType.Sync });
  });

  it('round-trips every message', () => {
    fc.assert(
      fc.property(arbitraryMessage, (m) => {
        expect(decodeMessage(encodeMessage(m))).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });

  it('rejects every truncation with a typed error', () => {
    fc.assert(
      fc.property(arbitraryMessage, (m) => {
        const frame = encodeMessage(m);
        for (let n = 0; n < frame.length; n++) expect(() => decodeMessage(frame.subarray(0, n))).toThrow(WireError);
      }),
      { numRuns: 100 },
    );
  });

  it('every single-byte mutation is rejected with a typed error or decodes to a well-typed message', () => {
    fc.assert(
      fc.property(arbitraryMessage, fc.nat(), fc.integer({ min: 1, max: 255 }), (m, at, x) => {
        const frame = encodeMessage(m).slice();
        const i = at % frame.length;
        frame[i] = frame[i]! ^ x;
        expectTypedOrDecoded(frame);
      }),
      { numRuns: 3000 },
    );
  });

  it('random bytes never throw anything untyped', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (frame) => expectTypedOrDecoded(frame)),
      { numRuns: 3000 },
    );
  });

  it('checks the size before decoding and the protocol version in every envelope', () => {
    expect(() => decodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1))).toThrow(MessageTooLargeError);
    const m: Message = { type: MessageType.UpdateReject, alias: new Uint8Array(8), version: 1n, reason: 1, sig: new Uint8Array(65) };
    const frame = encodeMessage(m).slice();
    frame[1] = 1; // [version=1, ...]: the protocol before control messages were signed
    expect(() => decodeMessage(frame)).toThrow(UnsupportedVersionError);
  });

  it('keeps a payment small: update ≤ 160 bytes, acceptance ≤ 100 bytes', () => {
    const update = encodeMessage({
      type: MessageType.Update,
      alias: new Uint8Array(8).fill(0xaa),
      version: 123_456n,
      balances: [[10n ** 18n, 2n * 10n ** 18n]],
      locked: [],
      isFinal: false,
      sig: new Uint8Array(65).fill(0xff),
    });
    const accept = encodeMessage({ type: MessageType.UpdateAccept, alias: new Uint8Array(8), version: 123_456n, sig: new Uint8Array(65) });
    expect(update.length).toBeLessThanOrEqual(160);
    expect(accept.length).toBeLessThanOrEqual(100);
  });

  it('keeps a stream voucher ≤ 100 bytes', () => {
    const voucher = encodeMessage({ type: MessageType.Voucher, alias: new Uint8Array(8).fill(1), cumulative: 123n * 10n ** 18n, sig: new Uint8Array(65).fill(7) });
    expect(voucher.length).toBeLessThanOrEqual(100);
  });

  it('errors carry stable codes', () => {
    try {
      decodeMessage(new Uint8Array([0xff]));
    } catch (err) {
      expect(err).toBeInstanceOf(PicopayError);
      expect((err as PicopayError).code).toBe('WIRE_MALFORMED');
    }
  });
});
