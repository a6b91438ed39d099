import type { Signer } from '../crypto/keys.ts';
import { verifyDigest } from '../crypto/verify.ts';
import {
  ConservationError,
  InsufficientFundsError,
  InvalidAllocationError,
  InvalidSignatureError,
  StaleVersionError,
  WrongPeerError,
} from '../errors.ts';
import { assertWellFormed, transfer } from '../model/allocation.ts';
import { channelId } from '../model/channelId.ts';
import { assertChallengeDuration } from '../model/duration.ts';
import { voucherDigest } from '../model/hash.ts';
import { type Address, type Allocation, type Bytes32, ChannelKind, type Params, type State, type SubAlloc } from '../model/types.ts';
import { type Balances, MessageType, type StateBody, type VirtualTerms, type Voucher } from '../wire/messages.ts';
import { aliasOf, type ChannelRecord, separatorOf } from './record.ts';

// Virtual channels as pure functions: how a parent ledger channel locks funds for one,
// how it releases them per the virtual channel's final state, and the stream vouchers
// that pay inside one. A virtual channel between A and B is funded by both A–G and
// G–B: in each parent, what virtual participant i ends with goes to the parent
// participant indexMap[i] (that participant itself, or the gateway standing in for it),
// so the gateway gets back across both parents exactly what it locked.

/** For each virtual participant, the parent participant that receives its outcome. */
export function indexMapFor(parent: readonly [Address, Address], vc: readonly [Address, Address]): [number, number] {
  const gatewayIdx = vc.includes(parent[0]) ? 1 : 0;
  const place = (p: Address): number => (parent[0] === p ? 0 : parent[1] === p ? 1 : gatewayIdx);
  const map: [number, number] = [place(vc[0]), place(vc[1])];
  if (map[0] === map[1]) throw new WrongPeerError('a virtual channel needs one participant on each side of the parent');
  return map;
}

export interface VirtualSpec {
  id: Bytes32;
  participants: readonly [Address, Address];
  /** balances[asset] = [participant 0's, participant 1's]. */
  balances: Balances;
}

/** The parent's outcome after locking the virtual channel's funds. */
export function lockOutcome(parent: Allocation, parentParticipants: readonly [Address, Address], vc: VirtualSpec): Allocation {
  if (parent.locked.some((l) => l.id === vc.id)) throw new InvalidAllocationError('virtual channel already locked in this parent');
  if (vc.balances.length !== parent.assets.length) throw new InvalidAllocationError('virtual channel must hold the parent assets');
  const indexMap = indexMapFor(parentParticipants, vc.participants);
  const balances = parent.balances.map((pair, a) => {
    const next: [bigint, bigint] = [pair[0], pair[1]];
    for (const i of [0, 1] as const) next[indexMap[i]!]! -= vc.balances[a]![i];
    if (next[0] < 0n || next[1] < 0n) throw new InsufficientFundsError('parent balance too low for the virtual channel');
    return next;
  });
  const entry: SubAlloc = {
    id: vc.id,
    balances: vc.balances.map(([x, y]) => x + y),
    indexMap: indexMap,
  };
  const outcome = { assets: parent.assets, balances, locked: [...parent.locked, entry] };
  assertWellFormed(outcome);
  return outcome;
}

/** The parent's outcome after releasing the virtual channel's funds per its final balances. */
export function unlockOutcome(parent: Allocation, vcId: Bytes32, finalBalances: Balances): Allocation {
  const entry = parent.locked.find((l) => l.id === vcId);
  if (!entry) throw new InvalidAllocationError('virtual channel is not locked in this parent');
  if (finalBalances.length !== parent.assets.length) throw new InvalidAllocationError('virtual channel must hold the parent assets');
  const balances = parent.balances.map((pair, a) => {
    const [x, y] = finalBalances[a]!;
    if (x + y !== entry.balances[a]) throw new ConservationError('final balances differ from the locked amount');
    const next: [bigint, bigint] = [pair[0], pair[1]];
    next[entry.indexMap[0]!]! += x;
    next[entry.indexMap[1]!]! += y;
    return next;
  });
  return { assets: parent.assets, balances, locked: parent.locked.filter((l) => l !== entry) };
}

/**
 * A virtual channel's params from the terms `sender` sent about it; refused if they are
 * not a virtual channel's, or their challenge duration is out of the contract's bounds.
 */
export function virtualParams(sender: Address, terms: Omit<VirtualTerms, 'sig' | 'balances'>, chain: { chainId: bigint; adjudicator: Address }): Params {
  if (terms.kind === ChannelKind.Ledger) throw new InvalidAllocationError('not a virtual channel');
  assertChallengeDuration(terms.challengeDuration);
  const participants = terms.index === 0 ? ([sender, terms.peer] as const) : ([terms.peer, sender] as const);
  return { ...chain, participants, challengeDuration: terms.challengeDuration, nonce: terms.nonce, kind: terms.kind };
}

export function initialVirtualState(params: Params, assets: readonly Address[], balances: Balances): State {
  return { channelId: channelId(params), version: 0n, outcome: { assets, balances, locked: [] }, isFinal: false };
}

/**
 * The parent update body that funds `vc` (for this side's proposal), paying the gateway
 * its `fee` in asset 0 in the same update (see feeOutcome).
 */
export function lockBody(parent: ChannelRecord, vc: ChannelRecord, fee = 0n): Omit<StateBody, 'version'> {
  const locked = lockOutcome(parent.current.state.outcome, parent.params.participants, {
    id: vc.id,
    participants: vc.params.participants,
    balances: vc.current.state.outcome.balances,
  });
  const outcome = feeOutcome(locked, parent.idx, fee);
  return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
}

/** The gateway's fee for funding a virtual channel: `fee` of asset 0 from the device (`device` index) to the gateway. */
export function feeOutcome(outcome: Allocation, device: 0 | 1, fee: bigint): Allocation {
  if (fee === 0n) return outcome;
  try {
    return transfer(outcome, device, fee);
  } catch (cause) {
    throw new InsufficientFundsError('parent balance too low for the virtual channel and the fee', { cause });
  }
}

/** The parent update body that releases `vc` per its final state. */
export function unlockBody(parent: ChannelRecord, vc: ChannelRecord): Omit<StateBody, 'version'> {
  const outcome = unlockOutcome(parent.current.state.outcome, vc.id, vc.current.state.outcome.balances);
  return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
}

/**
 * A stream's balances released per a voucher of `cumulative`: the payee gets it, capped at
 * what the payer locked, in asset 0 (vouchers pay in asset 0). For a stream of the one shape
 * allowed (one asset, payee at zero: assertStreamShape) this is what the contract's release pays.
 */
export function claimBalances(locked: Balances, cumulative: bigint): Balances {
  return locked.map(([x, y], a) => {
    const paid = a === 0 ? (cumulative < x ? cumulative : x) : 0n;
    return [x - paid, y + paid] as const;
  });
}

/** The parent update a stream's payee proposes to claim its voucher (see ClaimRequest). */
export function claimBody(parent: ChannelRecord, vc: ChannelRecord, cumulative: bigint): Omit<StateBody, 'version'> {
  const outcome = unlockOutcome(parent.current.state.outcome, vc.id, claimBalances(vc.current.state.outcome.balances, cumulative));
  return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
}

// ---- stream vouchers ----

/** What the payer (participant 0) locked: no voucher may exceed it. A stream stays at version 0 until its final state. */
export function streamCap(rec: ChannelRecord): bigint {
  return rec.current.state.outcome.balances[0]![0];
}

function voucherDigestOf(rec: ChannelRecord, cumulative: bigint): Uint8Array {
  return voucherDigest(separatorOf(rec), rec.id, cumulative);
}

/** The payer signs "paid `cumulative` in total". Persist the record before sending. */
export function signVoucher(rec: ChannelRecord, signer: Signer, cumulative: bigint): { record: ChannelRecord; message: Voucher } {
  if (rec.params.kind !== ChannelKind.Stream || rec.idx !== 0) throw new WrongPeerError('only the payer of a stream channel signs vouchers');
  if (rec.phase !== 'open') throw new StaleVersionError(rec.current.state.version, rec.current.state.version);
  const previous = rec.voucher?.cumulative ?? 0n;
  if (cumulative <= previous) throw new StaleVersionError(cumulative, previous);
  if (cumulative > streamCap(rec)) throw new InsufficientFundsError('voucher above what the payer locked');
  const sig = signer.sign(voucherDigestOf(rec, cumulative));
  const record = { ...rec, voucher: { cumulative, sig } };
  return { record, message: voucherMessage(record)! };
}

/** The payer's latest voucher as the message that carries it (null before the first). */
export function voucherMessage(rec: ChannelRecord): Voucher | null {
  const v = rec.voucher;
  return v ? { type: MessageType.Voucher, alias: aliasOf(rec.id), cumulative: v.cumulative, sig: v.sig } : null;
}

/**
 * A voucher of this stream, kept if it is higher than the one this side holds, within what
 * the payer locked, and signed by the payer: the payee receives the payer's vouchers; the
 * payer takes back its own that the payee shows on a resync (it sends a voucher before its
 * record of it is fsynced, so after a power loss that record may trail what it signed, and
 * the payee would refuse a lower final state). Returns null for one not higher.
 */
export function receiveVoucher(rec: ChannelRecord, msg: Voucher, ownKey: Uint8Array): ChannelRecord | null {
  if (rec.params.kind !== ChannelKind.Stream) throw new WrongPeerError('vouchers belong to stream channels');
  if (rec.phase !== 'open') return null;
  if (msg.cumulative <= (rec.voucher?.cumulative ?? 0n)) return null;
  if (msg.cumulative > streamCap(rec)) throw new InsufficientFundsError('voucher above what the payer locked');
  const payerKey = rec.idx === 0 ? ownKey : rec.peerKey;
  if (!verifyDigest(msg.sig, voucherDigestOf(rec, msg.cumulative), payerKey)) throw new InvalidSignatureError('voucher not signed by the payer');
  return { ...rec, voucher: { cumulative: msg.cumulative, sig: msg.sig } };
}


/** The final state of a stream channel: what the latest voucher says, moved to the payee. */
export function streamFinalBody(rec: ChannelRecord, cumulative: bigint): Omit<StateBody, 'version'> {
  const [x, y] = rec.current.state.outcome.balances[0]!;
  return { balances: [[x - cumulative, y + cumulative]], locked: [], isFinal: true };
}
