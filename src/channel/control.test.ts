import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { type Address, ChannelKind } from '../model/types.ts';
import { RejectReason } from '../wire/messages.ts';
import { closeRequest, openReject, openRejectedBy, signedByPeer, updateReject } from './control.ts';
import { acceptOpen, completeOpen, proposeOpen } from './open.ts';
import type { ChannelRecord } from './record.ts';
import { receiveAccept } from './update.ts';

const CHAIN = { chainId: 31337n, adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3' as Address };

/** A ledger channel between fresh signers, as A (participant 0) and B record it. */
function channel(sa: Signer, sb: Signer): { a: ChannelRecord; b: ChannelRecord } {
  const pending = proposeOpen(sa, { peer: sb.address, ...CHAIN, challengeDuration: 3600n, kind: ChannelKind.Ledger, assets: ['0x0000000000000000000000000000000000000000'], balances: [[1n, 1n]] });
  const accepted = acceptOpen(sb, pending.message, sa.address, CHAIN);
  const completed = completeOpen(sa, pending, accepted.reply);
  return { a: completed.record, b: receiveAccept(accepted.record, completed.reply)!.record };
}

// A refusal or close request is worth only what its signature binds: a replay onto
// another channel, another version, another reason or another proposal verifies nowhere.
describe('control messages', () => {
  const [sa, sb] = [Signer.random(), Signer.random()];
  const one = channel(sa, sb);
  const two = channel(sa, sb);

  it("a refusal verifies for the channel, version and reason it was signed for, and for nothing else", () => {
    const refusal = updateReject(one.b, sb, 5n, RejectReason.Policy);
    expect(signedByPeer(one.a, refusal)).toBe(true);
    expect(signedByPeer(two.a, { ...refusal })).toBe(false);
    expect(signedByPeer(one.a, { ...refusal, version: 6n })).toBe(false);
    expect(signedByPeer(one.a, { ...refusal, reason: RejectReason.Conflict })).toBe(false);
    // Signed by the receiver itself (a reflected message): not the peer's.
    expect(signedByPeer(one.a, updateReject(one.a, sa, 5n, RejectReason.Policy))).toBe(false);
  });

  it('a close request binds its channel and the voucher it names; a refusal cannot pass for one', () => {
    const close = closeRequest(one.b, sb);
    expect(signedByPeer(one.a, close)).toBe(true);
    expect(signedByPeer(two.a, close)).toBe(false);
    expect(signedByPeer(one.a, { ...close, cumulative: close.cumulative + 1n })).toBe(false);
    const refusal = updateReject(one.b, sb, 0n, 0 as RejectReason);
    expect(signedByPeer(one.a, { ...close, sig: refusal.sig })).toBe(false);
  });

  it('an open refusal binds the proposal share and the reason', () => {
    const share = new Uint8Array(32).fill(7);
    const refusal = openReject(sb, share, RejectReason.Policy);
    expect(openRejectedBy(refusal, sb.address)).toBe(true);
    expect(openRejectedBy(refusal, sa.address)).toBe(false);
    expect(openRejectedBy({ ...refusal, shareA: new Uint8Array(32).fill(8) }, sb.address)).toBe(false);
    expect(openRejectedBy({ ...refusal, reason: RejectReason.InvalidTerms }, sb.address)).toBe(false);
  });
});
