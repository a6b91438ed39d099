import { acceptOpen, completeOpen, proposeOpen } from '../channel/open.ts';
import type { ChannelRecord } from '../channel/record.ts';
import { receiveAccept } from '../channel/update.ts';
import { LOCAL_CHAIN } from '../chain/anvil.ts';
import { Signer } from '../crypto/keys.ts';
import { transfer } from '../model/allocation.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { type Address, ChannelKind, NATIVE_ASSET, type State } from '../model/types.ts';
import type { Balances, StateBody } from '../wire/messages.ts';

// Two records of one channel, built with the pure functions of src/channel alone: what
// the unit and property tests of that layer start from.

/** An open ledger channel between fresh signers A (participant 0) and B, as each records it. */
export function openChannel(assets: readonly Address[] = [NATIVE_ASSET], balances: Balances = [[100n, 100n]]): { a: ChannelRecord; b: ChannelRecord; sa: Signer; sb: Signer } {
  const sa = Signer.random();
  const sb = Signer.random();
  const pending = proposeOpen(sa, { peer: sb.address, ...LOCAL_CHAIN, challengeDuration: MIN_CHALLENGE_DURATION, kind: ChannelKind.Ledger, assets: [...assets], balances });
  const accepted = acceptOpen(sb, pending.message, sa.address, pending.context.chain);
  const completed = completeOpen(sa, pending, accepted.reply);
  const b = receiveAccept(accepted.record, completed.reply)!.record;
  return { a: completed.record, b, sa, sb };
}

/** The body of a proposal in which `rec`'s side pays `amount` of `asset` on top of `base`. */
export function payBody(rec: ChannelRecord, base: State, amount: bigint, asset = 0): Omit<StateBody, 'version'> {
  const outcome = transfer(base.outcome, rec.idx, amount, asset);
  return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
}
