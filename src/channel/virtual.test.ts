import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { ConservationError, InsufficientFundsError, InvalidSignatureError } from '../errors.ts';
import { assertWellFormed, totals } from '../model/allocation.ts';
import { voucherDigest } from '../model/hash.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { type Address, type Allocation, type Bytes32, ChannelKind } from '../model/types.ts';
import { MessageType, type Voucher } from '../wire/messages.ts';
import { acceptOpen, completeOpen, proposeOpen } from './open.ts';
import { aliasOf, type ChannelRecord, separatorOf } from './record.ts';
import { receiveAccept } from './update.ts';
import { lockOutcome, receiveVoucher, signVoucher, streamCap, unlockOutcome } from './virtual.ts';

const CHAIN = { chainId: 31337n, adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3' as Address };

/** A stream from payer A (60 locked) to payee B, as each side records it. */
function stream() {
  const [sa, sb] = [Signer.random(), Signer.random()];
  const pending = proposeOpen(sa, { peer: sb.address, ...CHAIN, challengeDuration: MIN_CHALLENGE_DURATION, kind: ChannelKind.Stream, assets: ['0x0000000000000000000000000000000000000000'], balances: [[60n, 0n]] });
  const accepted = acceptOpen(sb, pending.message, sa.address, CHAIN);
  const completed = completeOpen(sa, pending, accepted.reply);
  return { a: completed.record, b: receiveAccept(accepted.record, completed.reply)!.record, sa, sb };
}

describe('a stream payer taking back its own voucher', () => {
  it('takes a higher voucher that bears its own signature, and nothing else', () => {
    const { a, b, sa, sb } = stream();
    // A paid 20, the payee holds it; A's record lost it.
    const sent = signVoucher(a, sa, 20n).message;
    const held = receiveVoucher(b, sent, sb.publicKey)!;
    expect(receiveVoucher(a, sent, sa.publicKey)?.voucher?.cumulative).toBe(20n);
    // A payee that claims more than A signed: refused, whoever signed it.
    expect(() => receiveVoucher(a, { ...sent, cumulative: 30n }, sa.publicKey)).toThrow(InvalidSignatureError);
    const bySelf = signVoucher({ ...a, idx: 0, peerKey: sb.publicKey }, sb, 30n).message;
    expect(() => receiveVoucher(a, bySelf, sa.publicKey)).toThrow(InvalidSignatureError);
    expect(() => receiveVoucher(a, signVoucher(a, sa, 60n).message, sa.publicKey)).not.toThrow();
    // Above what A locked: refused even with A's signature (A never signs one).
    expect(() => receiveVoucher({ ...a, current: { ...a.current, state: { ...a.current.state, outcome: { ...a.current.state.outcome, balances: [[10n, 0n]] } } } }, sent, sa.publicKey)).toThrow(InsufficientFundsError);
    // Not higher than what A holds: nothing to take.
    const paid = signVoucher(a, sa, 25n).record;
    expect(receiveVoucher(paid, sent, sa.publicKey)).toBeNull();
    expect(held.voucher?.cumulative).toBe(20n);
  });
});

describe('virtual channel properties', () => {
  /** A voucher for `cumulative` on `rec`'s stream, signed by `signer` without signVoucher's checks (as any sender can). */
  const voucher = (rec: ChannelRecord, signer: Signer, cumulative: bigint): Voucher => ({
    type: MessageType.Voucher,
    alias: aliasOf(rec.id),
    cumulative,
    sig: signer.sign(voucherDigest(separatorOf(rec), rec.id, cumulative)),
  });

  it('the payee keeps the highest voucher within the lock, never less; one above the lock, tampered or signed by another key is refused', () => {
    const { a, b, sa, sb } = stream();
    const cap = streamCap(b);
    expect(cap).toBe(60n);
    const mallory = Signer.random();
    fc.assert(
      fc.property(
        fc.array(fc.bigInt({ min: 0n, max: 80n }), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        fc.bigInt({ min: 1n, max: 20n }),
        (amounts, sorted, bump) => {
          const sequence = sorted ? [...amounts].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)) : amounts;
          let payee = b;
          let held = 0n;
          for (const cumulative of sequence) {
            const msg = voucher(a, sa, cumulative);
            // Tampered with, or signed by another key: refused wherever it would count.
            const tampered = cumulative + bump;
            if (tampered > held && tampered <= cap) expect(() => receiveVoucher(payee, { ...msg, cumulative: tampered }, sb.publicKey)).toThrow(InvalidSignatureError);
            if (cumulative > held && cumulative <= cap) {
              expect(() => receiveVoucher(payee, voucher(a, mallory, cumulative), sb.publicKey)).toThrow(InvalidSignatureError);
              expect(() => receiveVoucher(payee, voucher(a, sb, cumulative), sb.publicKey)).toThrow(InvalidSignatureError);
            }
            if (cumulative > cap) {
              expect(() => receiveVoucher(payee, msg, sb.publicKey)).toThrow(InsufficientFundsError);
            } else {
              const next = receiveVoucher(payee, msg, sb.publicKey);
              if (cumulative > held) {
                expect(next?.voucher).toEqual({ cumulative, sig: msg.sig });
                payee = next!;
                held = cumulative;
              } else {
                expect(next).toBeNull();
              }
            }
            expect(payee.voucher?.cumulative ?? 0n).toBe(held);
          }
          const inRange = sequence.filter((x) => x <= cap);
          expect(held).toBe(inRange.reduce((m, x) => (x > m ? x : m), 0n));
          // What the payee holds stays as signed: the payer's key verifies it.
          if (payee.voucher) expect(receiveVoucher(a, { type: MessageType.Voucher, alias: aliasOf(a.id), ...payee.voucher }, sa.publicKey)?.voucher).toEqual(payee.voucher);
        },
      ),
      { numRuns: 30 },
    );
  });

  const [device, other, gatewayAddr] = [Signer.random(), Signer.random(), Signer.random()].map((s) => s.address) as [Address, Address, Address];
  const ASSETS = ['0x0000000000000000000000000000000000000000', '0x00000000000000000000000000000000000000aa', '0x00000000000000000000000000000000000000bb'] as Address[];
  const VC_ID = `0x${'cd'.repeat(32)}` as Bytes32;
  const amount = fc.bigInt({ min: 0n, max: 1000n });
  const perMille = fc.bigInt({ min: 0n, max: 1000n });

  it('locking a virtual channel in its parent and releasing it per the final balances conserves every asset', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }).chain((n) =>
          fc.record({
            // Per asset: the parent's two balances, the virtual channel's initial [x, y] as shares of them, and the final split of x + y.
            assets: fc.array(fc.tuple(amount, amount, perMille, perMille, perMille), { minLength: n, maxLength: n }),
            deviceFirst: fc.boolean(),
            vcDeviceFirst: fc.boolean(),
            preLocked: fc.boolean(),
          }),
        ),
        ({ assets, deviceFirst, vcDeviceFirst, preLocked }) => {
          const parentParticipants = (deviceFirst ? [device, gatewayAddr] : [gatewayAddr, device]) as [Address, Address];
          const vcParticipants = (vcDeviceFirst ? [device, other] : [other, device]) as [Address, Address];
          const share = (x: bigint, f: bigint) => (x * f) / 1000n;
          // Another virtual channel already locked in this parent stays as it is.
          const earlier = { id: `0x${'ef'.repeat(32)}` as Bytes32, balances: assets.map(() => 7n), indexMap: [0, 1] as const };
          const parent: Allocation = {
            assets: ASSETS.slice(0, assets.length),
            balances: assets.map(([p0, p1]) => [p0, p1] as const),
            locked: preLocked ? [earlier] : [],
          };
          // What each virtual participant brings comes from the parent participant standing for it.
          const deviceIdx = deviceFirst ? 0 : 1;
          const gatewayIdx = deviceFirst ? 1 : 0;
          const vcDevice = vcDeviceFirst ? 0 : 1;
          const vcGateway = vcDeviceFirst ? 1 : 0;
          const vcBalances = assets.map(([p0, p1, f, g]) => {
            const fromDevice = share(deviceFirst ? p0 : p1, f);
            const fromGateway = share(deviceFirst ? p1 : p0, g);
            return (vcDeviceFirst ? [fromDevice, fromGateway] : [fromGateway, fromDevice]) as [bigint, bigint];
          });
          const locked = lockOutcome(parent, parentParticipants, { id: VC_ID, participants: vcParticipants, balances: vcBalances });
          assertWellFormed(locked);
          expect(totals(locked)).toEqual(totals(parent));
          expect(locked.locked.at(-1)).toEqual({ id: VC_ID, balances: vcBalances.map(([x, y]) => x + y), indexMap: vcDeviceFirst ? [deviceIdx, gatewayIdx] : [gatewayIdx, deviceIdx] });

          const finalBalances = vcBalances.map(([x, y], i) => {
            const moved = share(x + y, assets[i]![4]);
            return [moved, x + y - moved] as [bigint, bigint];
          });
          const released = unlockOutcome(locked, VC_ID, finalBalances);
          assertWellFormed(released);
          expect(totals(released)).toEqual(totals(parent));
          expect(released.locked).toEqual(parent.locked);
          // Each parent participant ends with what it had, less what it brought, plus what its virtual participant ends with.
          released.balances.forEach((pair, i) => {
            expect(pair[deviceIdx]).toBe(parent.balances[i]![deviceIdx] - vcBalances[i]![vcDevice] + finalBalances[i]![vcDevice]);
            expect(pair[gatewayIdx]).toBe(parent.balances[i]![gatewayIdx] - vcBalances[i]![vcGateway] + finalBalances[i]![vcGateway]);
          });

          // A release whose split does not add up to the locked amount is refused.
          const off = finalBalances.map(([x, y], i): [bigint, bigint] => (i === 0 ? [x + 1n, y] : [x, y]));
          expect(() => unlockOutcome(locked, VC_ID, off)).toThrow(ConservationError);
          // And the parent cannot lock more than its participant holds.
          const tooMuch = vcBalances.map((pair, i): [bigint, bigint] => {
            const next: [bigint, bigint] = [pair[0], pair[1]];
            if (i === 0) next[vcDevice] = parent.balances[0]![deviceIdx] + 1n;
            return next;
          });
          expect(() => lockOutcome(parent, parentParticipants, { id: VC_ID, participants: vcParticipants, balances: tooMuch })).toThrow(InsufficientFundsError);
        },
      ),
      { numRuns: 100 },
    );
  });
});
