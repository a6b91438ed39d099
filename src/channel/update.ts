import type { Signer } from '../crypto/keys.ts';
import { verifyDigest } from '../crypto/verify.ts';
import {
  ChannelClosedError,
  ConservationError,
  FinalStateError,
  InsufficientFundsError,
  InvalidAllocationError,
  InvalidSignatureError,
  InvalidTermsError,
  NegativeBalanceError,
  type ProtocolError,
  StaleVersionError,
  UnknownChannelError,
  UpdateConflictError,
  UpdateInProgressError,
  UpdateRejectedError,
  VersionGapError,
  WrongPeerError,
} from '../errors.ts';
import { assertConserved, assertWellFormed } from '../model/allocation.ts';
import type { SignedState, State } from '../model/types.ts';
import {
  MessageType,
  RejectReason,
  type StateBody,
  type Update,
  type UpdateAccept,
  type UpdateReject,
} from '../wire/messages.ts';
import { updateReject, signedByPeer } from './control.ts';
import { aliasOf, type ChannelRecord, digestOf, isFullySigned, proposalMessage, sameState, stagedMessage, stateFromBody, withSig } from './record.ts';

// The update protocol of a two-party channel as pure functions: each takes a record and
// a message, and returns the new record (to persist before anything is sent) and what to
// send. No I/O, no clocks.

/**
 * How far above the last version a proposal may go: a proposer skips versions only for
 * prepared proposals it dropped, one per refusal.
 */
export const MAX_VERSION_GAP = 64n;

/** The version every next state must be above: the current one, or the highest this side signed. */
function versionFloor(rec: ChannelRecord): bigint {
  return rec.current.state.version > rec.highestSigned ? rec.current.state.version : rec.highestSigned;
}

/** A proposal of the other side that this side would sign: the checks that come before any policy. */
export function checkProposal(rec: ChannelRecord, body: StateBody): State {
  if (rec.phase === 'opening') throw new ChannelClosedError('channel is not open yet');
  if (rec.phase === 'final') throw new FinalStateError('channel is final: nothing follows a final state');
  const floor = versionFloor(rec);
  if (body.version <= floor) throw new StaleVersionError(body.version, floor);
  // A refused proposal's version counts as signed (see refuse): without a bound, one
  // refused proposal at 2^64 - 1 would leave the channel no version to go on with.
  if (body.version > floor + MAX_VERSION_GAP) throw new VersionGapError(body.version, floor);
  const next = stateFromBody(rec, body);
  assertSuccessor(rec.current.state, next);
  return next;
}

/** A proposal that passes checkProposal and bears the peer's signature: only such a one reaches a policy. */
export function verifiedProposal(rec: ChannelRecord, msg: StateBody & { sig: Uint8Array }): State {
  const state = checkProposal(rec, msg);
  if (!verifyDigest(msg.sig, digestOf(rec, state), rec.peerKey)) throw new InvalidSignatureError('proposal not signed by the peer');
  return state;
}

/**
 * This side refuses the peer's (verified) proposal at `version`, and from then on signs
 * nothing at that version: the peer's signature on it stays valid, and a replay of it,
 * or its retransmission, must not get signed after the peer was told no and let it go.
 * Store the record before the refusal leaves.
 */
export function refuse(rec: ChannelRecord, signer: Signer, version: bigint, reason: RejectReason): { record: ChannelRecord; reply: UpdateReject } {
  const highestSigned = version > rec.highestSigned ? version : rec.highestSigned;
  return { record: { ...rec, highestSigned }, reply: updateReject(rec, signer, version, reason) };
}

/**
 * What any next state must be: well formed, conserving every asset, and if final, locking
 * nothing: a final ledger state that still locks a virtual channel would let the parent
 * close with the virtual channel unsettled, leaving the other device's side to a dispute.
 */
function assertSuccessor(prev: State, next: State): void {
  assertWellFormed(next.outcome);
  assertConserved(prev.outcome, next.outcome);
  if (next.isFinal && next.outcome.locked.length > 0) throw new InvalidAllocationError('a final state cannot lock a virtual channel: settle it first');
}

/** The body of a final state at the current balances and locks: nothing can follow it. */
export function finalBody(s: State): Omit<StateBody, 'version'> {
  return { balances: s.outcome.balances, locked: s.outcome.locked, isFinal: true };
}

export interface Proposal {
  record: ChannelRecord;
  message: Update;
  state: State;
}

/**
 * This side proposes the next state: it signs it and stages it, above every version it
 * signed and above `peerSigned`, the highest the peer was seen to propose (after a tie,
 * a version the peer already used would only be refused as stale).
 */
export function propose(rec: ChannelRecord, signer: Signer, body: Omit<StateBody, 'version'>, peerSigned = -1n): Proposal {
  if (rec.staged) throw new UpdateInProgressError('an update is already in flight on this channel');
  const mine = versionFloor(rec);
  const floor = peerSigned > mine ? peerSigned : mine;
  const state = checkProposal(rec, { ...body, version: floor + 1n });
  return stage(rec, signer, state);
}

function stage(rec: ChannelRecord, signer: Signer, state: State): Proposal {
  const sig = signer.sign(digestOf(rec, state));
  const record = { ...rec, staged: { state, sig }, highestSigned: state.version };
  return { record, message: stagedMessage(record), state };
}

/**
 * While this side's proposal waits for the peer, signs the next one on top of it, so that
 * it can go out the moment the first is accepted. Still one update in flight: nothing is
 * sent now.
 */
export function prepare(rec: ChannelRecord, signer: Signer, body: Omit<StateBody, 'version'>): ChannelRecord {
  const base = rec.staged;
  if (!base || rec.prepared || base.attachment) throw new UpdateInProgressError('nothing to prepare on');
  if (base.state.isFinal) throw new FinalStateError('nothing follows a final state');
  const state: State = { ...stateFromBody(rec, { ...body, version: rec.highestSigned + 1n }) };
  assertSuccessor(base.state, state);
  return { ...rec, prepared: { state, sig: signer.sign(digestOf(rec, state)) }, highestSigned: state.version };
}

export type UpdateResult =
  | { kind: 'accepted'; record: ChannelRecord; reply: UpdateAccept; state: SignedState }
  | { kind: 'duplicate'; reply: UpdateAccept }
  | { kind: 'rejected'; reply: UpdateReject; error: ProtocolError };

export function reasonOf(err: ProtocolError): RejectReason {
  if (err instanceof StaleVersionError) return RejectReason.StaleVersion;
  if (err instanceof ConservationError) return RejectReason.NotConserved;
  if (err instanceof InvalidSignatureError) return RejectReason.InvalidSignature;
  if (err instanceof FinalStateError) return RejectReason.ChannelFinal;
  if (err instanceof NegativeBalanceError || err instanceof InvalidAllocationError) return RejectReason.InvalidAllocation;
  if (err instanceof UpdateConflictError || err instanceof UpdateInProgressError) return RejectReason.Conflict;
  if (err instanceof UnknownChannelError || err instanceof WrongPeerError || err instanceof InsufficientFundsError || err instanceof InvalidTermsError) return RejectReason.InvalidTerms;
  return RejectReason.Policy;
}

function reject(rec: ChannelRecord, signer: Signer, version: bigint, error: ProtocolError): UpdateResult {
  return { kind: 'rejected', reply: updateReject(rec, signer, version, reasonOf(error)), error };
}

/**
 * The peer proposes a state. A repeat of the state already accepted gets the same
 * acceptance again (the first one may have been lost); a proposal that crosses this
 * side's own is refused as a conflict (see onReject for who retries).
 */
export function receiveUpdate(rec: ChannelRecord, signer: Signer, msg: StateBody & { sig: Uint8Array }, verified?: State): UpdateResult {
  const cur = rec.current;
  if (msg.version === cur.state.version && isFullySigned(cur) && sameState(cur.state, stateFromBody(rec, msg))) {
    return { kind: 'duplicate', reply: { type: MessageType.UpdateAccept, alias: aliasOf(rec.id), version: msg.version, sig: cur.sigs[rec.idx] } };
  }
  let state: State;
  try {
    if (rec.staged) throw new UpdateConflictError('both sides proposed at once');
    // `verified`: what verifiedProposal returned for this very record (one verification, not two).
    state = verified ?? verifiedProposal(rec, msg);
  } catch (err) {
    return reject(rec, signer, msg.version, err as ProtocolError);
  }
  const mine = signer.sign(digestOf(rec, state));
  const sigs = withSig(withSig([null, null], rec.idx, mine), rec.idx === 0 ? 1 : 0, msg.sig);
  const signed: SignedState = { state, sigs };
  return {
    kind: 'accepted',
    record: { ...rec, current: signed, highestSigned: state.version, phase: state.isFinal ? 'final' : 'open' },
    reply: { type: MessageType.UpdateAccept, alias: aliasOf(rec.id), version: state.version, sig: mine },
    state: signed,
  };
}

/**
 * An acceptance of the staged proposal has arrived: the prepared one may go out now,
 * before that acceptance is verified, so that the peer works on it while this side
 * verifies. It is already signed and durably stored, and it never goes back: from now on
 * the peer's answer to it answers both proposals (see receiveAccept and receiveReject).
 */
export function sendPrepared(rec: ChannelRecord, msg: UpdateAccept): { record: ChannelRecord; message: Update } | null {
  const { staged, prepared } = rec;
  if (!staged || !prepared || prepared.sent || staged.state.version !== msg.version) return null;
  return { record: { ...rec, prepared: { ...prepared, sent: true } }, message: proposalMessage(rec, prepared) };
}

export interface AcceptResult {
  record: ChannelRecord;
  state: SignedState;
  /** 'staged': the staged proposal; 'both': a sent prepared one, whose signature completes the staged one too. */
  completed: 'staged' | 'both';
}

/** The peer's signature on one of this side's proposals (or on version 0 while opening). */
export function receiveAccept(rec: ChannelRecord, msg: UpdateAccept): AcceptResult | null {
  const peerIdx = rec.idx === 0 ? 1 : 0;
  const sentPrepared = rec.prepared?.sent && rec.prepared.state.version === msg.version ? rec.prepared : null;
  const own = rec.staged && rec.staged.state.version === msg.version ? rec.staged : sentPrepared;
  const target = own
    ? { state: own.state, sigs: withSig([null, null], rec.idx, own.sig) }
    : rec.phase === 'opening' && msg.version === rec.current.state.version
      ? rec.current
      : null;
  if (!target) return null; // late or repeated: nothing to do
  if (!verifyDigest(msg.sig, digestOf(rec, target.state), rec.peerKey)) throw new InvalidSignatureError('acceptance not signed by the peer');
  const state: SignedState = { state: target.state, sigs: withSig(target.sigs, peerIdx, msg.sig) };
  const phase = state.state.isFinal ? 'final' : 'open';
  if (sentPrepared) return { record: { ...rec, current: state, staged: null, prepared: null, phase }, state, completed: 'both' };
  const next = rec.prepared ? { state: rec.prepared.state, sig: rec.prepared.sig } : null;
  return { record: { ...rec, current: state, staged: next, prepared: null, phase }, state, completed: 'staged' };
}

export type RejectResult =
  | { kind: 'retry'; proposal: Proposal }
  | { kind: 'failed'; record: ChannelRecord; error: ProtocolError }
  | null;

/**
 * The peer refused this side's staged proposal (or the prepared one sent after it, which
 * was built on it: the staged one is then treated as refused too). On a conflict or a stale version,
 * participant 0 wins the tie: it re-proposes the same change at a fresh version, which
 * the peer has never signed; participant 1 drops its proposal and its caller retries
 * later. Nobody ever signs two different states with one version.
 */
export function receiveReject(rec: ChannelRecord, signer: Signer, msg: UpdateReject, peerSigned = -1n): RejectResult {
  // Once the prepared proposal is out, the peer's answer to it decides for both.
  const answered = rec.prepared?.sent ? rec.prepared : rec.staged;
  if (!rec.staged || answered?.state.version !== msg.version) return null;
  // A refusal not signed by the peer changes nothing (anyone can publish one under its name).
  if (!signedByPeer(rec, msg)) return null;
  const crossed = msg.reason === RejectReason.Conflict || msg.reason === RejectReason.StaleVersion;
  if (crossed && rec.idx === 0) {
    const state = { ...rec.staged.state, version: (peerSigned > rec.highestSigned ? peerSigned : rec.highestSigned) + 1n };
    return { kind: 'retry', proposal: stage({ ...rec, staged: null, prepared: null }, signer, state) };
  }
  const error = crossed
    ? new UpdateConflictError('the peer proposed at the same time and has precedence')
    : new UpdateRejectedError(Object.entries(RejectReason).find(([, v]) => v === msg.reason)?.[0] ?? String(msg.reason));
  return { kind: 'failed', record: { ...rec, staged: null, prepared: null }, error };
}
