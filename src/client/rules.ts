import type { Attachment, ChannelRecord } from '../channel/record.ts';
import { sameLock } from '../model/allocation.ts';
import { ChannelKind, type State } from '../model/types.ts';
import { type ClaimRequest, type FundRequest, MessageType, type SettleRequest, type Update } from '../wire/messages.ts';
import type { UpdateContext } from './types.ts';

// The Agent's fixed rules, as pure functions: the default policy, what a channel kind
// allows before any policy, and when a countersignature must be stored durably.

/**
 * Accepts an update unless it lowers one of this side's balances or touches its locks:
 * funds are locked and released only by this side's own proposals, with evidence, so a
 * peer cannot drop a lock and keep what it held.
 */
export const receiveOnly = ({ channel, current, proposed }: UpdateContext): boolean =>
  sameLocks(current, proposed) && proposed.outcome.balances.every((pair, i) => pair[channel.idx] >= current.outcome.balances[i]![channel.idx]);

function sameLocks(current: State, proposed: State): boolean {
  const [a, b] = [current.outcome.locked, proposed.outcome.locked];
  return a.length === b.length && a.every((l, i) => sameLock(l, b[i]!));
}

/** A parent update that funds or releases a virtual channel travels with its evidence. */
export function withAttachment(update: Update, attachment?: Attachment): Update | FundRequest | SettleRequest | ClaimRequest {
  if (!attachment) return update;
  if ('fund' in attachment) return { ...update, type: MessageType.FundRequest, vc: attachment.fund };
  if ('settle' in attachment) return { ...update, type: MessageType.SettleRequest, vc: attachment.settle };
  return { ...update, type: MessageType.ClaimRequest, vc: attachment.claim };
}

/**
 * Rules of the channel kind, before any policy: in a stream only the payer proposes, only
 * the final state, and it must pay the payee at least what the highest voucher says.
 * (Whether this side's ledger channel backs a virtual channel yet is the agent's to wait for.)
 */
export function kindRule(rec: ChannelRecord, proposed: State): boolean {
  if (rec.params.kind !== ChannelKind.Stream) return true;
  if (rec.idx !== 1 || !proposed.isFinal) return false;
  const [, y] = rec.current.state.outcome.balances[0]!;
  return proposed.outcome.balances[0]![1] >= y + (rec.voucher?.cumulative ?? 0n);
}

/**
 * Whether this side needs the peer's countersignature on its own proposal `next` to
 * survive power loss: it does when `next` gives it more than the current state in some
 * asset, or ends the channel. A plain payment to the peer does not: losing that
 * countersignature leaves this side with the older state, which pays it more, and a
 * resync brings the newer one back.
 */
export function reliesOn(rec: ChannelRecord, next: State): boolean {
  const cur = rec.current.state.outcome.balances;
  return next.isFinal || next.outcome.balances.some((pair, i) => pair[rec.idx] > cur[i]![rec.idx]);
}
