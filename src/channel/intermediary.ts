import { recoverAddress } from '../crypto/verify.ts';
import { InvalidAllocationError, InvalidSignatureError, UnknownChannelError, WrongPeerError } from '../errors.ts';
import { sameLock } from '../model/allocation.ts';
import { domainSeparator, outcomeHash, stateDigest, toHex, voucherDigest } from '../model/hash.ts';
import { type Address, type Bytes32, ChannelKind, type Params, type State } from '../model/types.ts';
import type { Balances, VirtualFinal, VirtualTerms, VoucherClaim } from '../wire/messages.ts';
import { assertStreamShape } from './open.ts';
import type { Attachment, ChannelRecord } from './record.ts';
import { claimBalances, feeOutcome, initialVirtualState, lockOutcome, unlockOutcome, virtualParams } from './virtual.ts';

// The intermediary's rules, as pure functions: what a device's request to lock or release
// a virtual channel in its ledger channel must show before the gateway may hold it for
// matching, and what both requests must have in common (see src/client/intermediary.ts).

/** A device's parent update with its evidence, as the gateway's agent holds it. */
export interface ParentRequest {
  /** The gateway's ledger channel with the device. */
  channel: ChannelRecord;
  current: State;
  proposed: State;
}

/** What the gateway keeps about a virtual channel it funded: enough to check its release. */
export interface FundedVirtual {
  id: Bytes32;
  params: Params;
  assets: readonly Address[];
  balances: Balances;
  /** Both signatures on version 0 (null for a stream, which vouchers resolve). */
  sigs: readonly [Uint8Array, Uint8Array] | null;
  /** A stream: the highest voucher its payee claimed with (see checkClaim), which the gateway registers on-chain. */
  voucher?: { cumulative: bigint; sig: Uint8Array };
}

/**
 * The virtual channels a parent update locks and releases, and those whose lock it keeps
 * but alters (its amounts or its mapping): no protocol step does that, so an update that
 * does is refused whoever proposes it.
 */
export function lockDiff(current: State, proposed: State): { added: Bytes32[]; removed: Bytes32[]; altered: Bytes32[] } {
  const before = new Map(current.outcome.locked.map((l) => [l.id, l]));
  const after = new Map(proposed.outcome.locked.map((l) => [l.id, l]));
  return {
    added: [...after.keys()].filter((id) => !before.has(id)),
    removed: [...before.keys()].filter((id) => !after.has(id)),
    altered: [...after.values()].filter((l) => before.has(l.id) && !sameLock(before.get(l.id)!, l)).map((l) => l.id),
  };
}

/**
 * What every parent update must keep to: its locks change only as its evidence says.
 * Without evidence none is added or released; with funding terms, exactly the virtual
 * channel they describe (with `self` as one participant) is added; with a final state,
 * exactly that virtual channel is released. Throws InvalidAllocationError otherwise.
 */
export function assertEvidencedLocks(
  current: State,
  next: Pick<State, 'outcome'>,
  evidence: Attachment | undefined,
  self: Address,
  chain: { chainId: bigint; adjudicator: Address },
): void {
  const { added, removed, altered } = lockDiff(current, { ...current, outcome: next.outcome });
  if (altered.length > 0) throw new InvalidAllocationError(`the update alters the lock of ${altered.join(',')}`);
  const id = (list: Bytes32[]): string => list.join(',');
  const expected = !evidence
    ? { added: '', removed: '' }
    : 'fund' in evidence
      ? { added: initialVirtualState(virtualParams(self, evidence.fund, chain), current.outcome.assets, evidence.fund.balances).channelId, removed: '' }
      : { added: '', removed: toHex('settle' in evidence ? evidence.settle.id : evidence.claim.id) };
  if (id(added) !== expected.added || id(removed) !== expected.removed) {
    throw new InvalidAllocationError(evidence ? 'the update changes other locks than its evidence names' : 'locks change only with evidence: fund or settle a virtual channel through its protocol');
  }
}

/**
 * A funding request: the terms describe the virtual channel `vcId` the update locks, with
 * the device as one participant and another as the other, signed by the device (a stream
 * needs no signature), and the update locks exactly its funds and pays `fee`. Returns its
 * parameters and `match`, what the other device's request must show alike: the initial
 * outcome (the id covers neither balances nor assets, so two colluding devices could
 * otherwise make the gateway lock different amounts in the two parents).
 */
export function checkFunding(req: ParentRequest, vcId: Bytes32, terms: VirtualTerms, chain: { chainId: bigint; adjudicator: Address }, fee: bigint): { params: Params; match: string } {
  const device = req.channel.peer;
  const params = virtualParams(device, terms, chain);
  // The devices check this between them; two colluding ones would not (see checkClaim).
  assertStreamShape(params.kind, req.current.outcome.assets.length, terms.balances);
  const v0 = initialVirtualState(params, req.current.outcome.assets, terms.balances);
  if (v0.channelId !== vcId) throw new InvalidAllocationError('locked id is not the virtual channel described');
  if (terms.peer === device) throw new WrongPeerError('a virtual channel needs two different participants');
  if (terms.sig === null ? params.kind !== ChannelKind.Stream : recoverAddress(terms.sig, stateDigest(domainSeparator(params), v0)) !== device) {
    throw new InvalidSignatureError('missing or bad signature on the virtual channel');
  }
  const locked = lockOutcome(req.current.outcome, req.channel.params.participants, { id: vcId, participants: params.participants, balances: terms.balances });
  const expected = feeOutcome(locked, req.channel.idx === 0 ? 1 : 0, fee);
  if (outcomeHash(expected) !== outcomeHash(req.proposed.outcome)) throw new InvalidAllocationError('parent update does not lock exactly the virtual channel funds and pay the fee');
  return { params, match: outcomeHash(v0.outcome) };
}

/**
 * A release request: a final state of the funded virtual channel signed by both its
 * participants, and an update that releases the lock exactly per it. Returns `match`,
 * what the other device's request must show alike: the same final version and outcome.
 */
export function checkRelease(req: ParentRequest, vc: FundedVirtual | undefined, final: VirtualFinal): { match: string } {
  if (!vc || toHex(final.id) !== vc.id) throw new UnknownChannelError('unknown virtual channel');
  const state: State = { channelId: vc.id, version: final.version, outcome: { assets: vc.assets, balances: final.balances, locked: [] }, isFinal: true };
  const digest = stateDigest(domainSeparator(vc.params), state);
  if (recoverAddress(final.sigs[0], digest) !== vc.params.participants[0] || recoverAddress(final.sigs[1], digest) !== vc.params.participants[1]) {
    throw new InvalidSignatureError('final state not signed by both participants');
  }
  const expected = unlockOutcome(req.current.outcome, vc.id, final.balances);
  if (outcomeHash(expected) !== outcomeHash(req.proposed.outcome)) throw new InvalidAllocationError('parent update does not release per the final state');
  return { match: outcomeHash(state.outcome) + final.version };
}

/**
 * A claim: the payee of a funded stream shows a voucher its payer signed and proposes an
 * update that releases the stream's lock per it (the payee gets the amount, capped at the
 * lock). Nothing else may be claimed: not by the payer, not a bidirectional channel, not
 * more than the voucher says.
 */
export function checkClaim(req: ParentRequest, vc: FundedVirtual | undefined, claim: VoucherClaim): void {
  if (!vc || toHex(claim.id) !== vc.id) throw new UnknownChannelError('unknown virtual channel');
  if (vc.params.kind !== ChannelKind.Stream) throw new InvalidAllocationError('only a stream is claimed by voucher');
  // What the claim pays must be what the contract pays in the other parent.
  assertStreamShape(vc.params.kind, vc.assets.length, vc.balances);
  if (req.channel.peer !== vc.params.participants[1]) throw new WrongPeerError("only a stream's payee claims its vouchers");
  if (recoverAddress(claim.sig, voucherDigest(domainSeparator(vc.params), vc.id, claim.cumulative)) !== vc.params.participants[0]) {
    throw new InvalidSignatureError('voucher not signed by the payer');
  }
  const expected = unlockOutcome(req.current.outcome, vc.id, claimBalances(vc.balances, claim.cumulative));
  if (outcomeHash(expected) !== outcomeHash(req.proposed.outcome)) throw new InvalidAllocationError('parent update does not release per the voucher');
}
