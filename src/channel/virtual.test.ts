import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { InsufficientFundsError, InvalidSignatureError } from '../errors.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { type Address, ChannelKind } from '../model/types.ts';
import { acceptOpen, completeOpen, proposeOpen } from './open.ts';
import { receiveAccept } from './update.ts';
import { receiveVoucher, signVoucher } from './virtual.ts';

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
