import { randomBytes } from 'node:crypto';
import type { Signer } from '../crypto/keys.ts';
import { addressOf } from '../crypto/keys.ts';
import { recoverPublicKey, verifyDigest } from '../crypto/verify.ts';
import { InvalidAllocationError, InvalidSignatureError, WrongPeerError } from '../errors.ts';
import { assertWellFormed } from '../model/allocation.ts';
import { assertChallengeDuration } from '../model/duration.ts';
import { channelId, nonceFromShares } from '../model/channelId.ts';
import { domainSeparator, openDigest, toHex } from '../model/hash.ts';
import { type Address, type Allocation, ChannelKind, type Params, type SignedState, type State } from '../model/types.ts';
import { type Balances, MessageType, type OpenAccept, type OpenPropose, type UpdateAccept } from '../wire/messages.ts';
import { aliasOf, type ChannelRecord, digestOf, isFullySigned, withSig } from './record.ts';

// Opening a channel: A proposes terms and its nonce share, signed; B adds its share,
// which fixes the nonce and so the id, and signs version 0; A countersigns version 0.

export interface OpenTerms {
  peer: Address;
  chainId: bigint;
  adjudicator: Address;
  challengeDuration: bigint;
  kind: ChannelKind;
  assets: readonly Address[];
  /** balances[asset] = [proposer's, peer's]. */
  balances: Balances;
  /** Virtual channels: the gateway that funds it. */
  gateway?: Address;
}

/**
 * What a proposal means beyond its bytes: the wire leaves out what both sides know, the
 * chain they are bound to and who sent it to whom. The signature covers all of it, so a
 * proposal read in another context does not verify.
 */
export interface OpenContext {
  chain: { chainId: bigint; adjudicator: Address };
  participants: readonly [Address, Address];
}

/** A proposal this side sent and has not seen answered; persisted so a restart can finish it. */
export interface PendingOpen {
  message: OpenPropose;
  context: OpenContext;
}

function openDigestOf(ctx: OpenContext, m: OpenPropose): Uint8Array {
  return openDigest(domainSeparator(ctx.chain), {
    share: toHex(m.share),
    participants: ctx.participants,
    challengeDuration: m.challengeDuration,
    kind: m.kind,
    outcome: outcomeOf(m),
  });
}

function outcomeOf(m: Pick<OpenPropose, 'assets' | 'balances'>): Allocation {
  return { assets: m.assets, balances: m.balances, locked: [] };
}

/**
 * Terms either side refuses before signing: a challenge duration the contract would not
 * enforce as written, a malformed outcome, and for a stream anything but one asset with
 * the payee at zero (on-chain a stream resolves from the locked total and the voucher alone).
 */
function assertTerms(kind: ChannelKind, challengeDuration: bigint, outcome: Allocation): void {
  assertChallengeDuration(challengeDuration);
  assertWellFormed(outcome);
  assertStreamShape(kind, outcome.assets.length, outcome.balances);
}

/**
 * A stream holds one asset and its payee starts at zero: on-chain it resolves from the
 * locked total and the voucher alone (the payee gets min(voucher, total) in asset 0), so
 * any other shape would pay out otherwise than the channel says.
 */
export function assertStreamShape(kind: ChannelKind, assets: number, balances: readonly (readonly [bigint, bigint])[]): void {
  if (kind === ChannelKind.Stream && (assets !== 1 || balances.length !== 1 || balances[0]![1] !== 0n)) {
    throw new InvalidAllocationError('a stream channel holds one asset and the payee starts at zero');
  }
}

export function proposeOpen(signer: Signer, terms: OpenTerms, share: Uint8Array = randomBytes(32)): PendingOpen {
  const context: OpenContext = { chain: { chainId: terms.chainId, adjudicator: terms.adjudicator }, participants: [signer.address, terms.peer] };
  const unsigned: OpenPropose = {
    type: MessageType.OpenPropose,
    share: new Uint8Array(share),
    challengeDuration: terms.challengeDuration,
    kind: terms.kind,
    assets: terms.assets,
    balances: terms.balances,
    sig: new Uint8Array(65),
    gateway: terms.gateway ?? null,
  };
  assertTerms(terms.kind, terms.challengeDuration, outcomeOf(unsigned));
  return { message: { ...unsigned, sig: signer.sign(openDigestOf(context, unsigned)) }, context };
}

function paramsOf(ctx: OpenContext, m: OpenPropose, shareB: Uint8Array): Params {
  return {
    ...ctx.chain,
    participants: ctx.participants,
    challengeDuration: m.challengeDuration,
    nonce: nonceFromShares(m.share, shareB),
    kind: m.kind,
  };
}

function initialState(params: Params, m: OpenPropose): State {
  return { channelId: channelId(params), version: 0n, outcome: outcomeOf(m), isFinal: false };
}

/** A channel's record right after version 0 is signed: 'open' once it carries both signatures. */
function newRecord(
  base: Pick<ChannelRecord, 'id' | 'params'>,
  idx: 0 | 1,
  peer: Address,
  peerKey: Uint8Array,
  current: SignedState,
  shares: { a: Uint8Array; b: Uint8Array },
): ChannelRecord {
  return {
    ...base,
    idx,
    peer,
    peerKey,
    phase: isFullySigned(current) ? 'open' : 'opening',
    current,
    staged: null,
    highestSigned: 0n,
    shares: { a: new Uint8Array(shares.a), b: new Uint8Array(shares.b) },
  };
}

/** The accepter's answer to a proposal, rebuilt from its record when it has to be sent again. */
export function openAcceptOf(rec: ChannelRecord): OpenAccept {
  return { type: MessageType.OpenAccept, shareA: rec.shares.a, shareB: rec.shares.b, sig: rec.current.sigs[1]! };
}

/**
 * Checks that a proposal to `self` is signed by its sender `from` for this chain, and
 * that its terms are ones either side accepts; returns the proposer's public key. Done
 * before any policy runs, so that no policy ever sees a forged proposal.
 */
export function verifyProposal(self: Address, m: OpenPropose, from: Address, chain: OpenContext['chain']): Uint8Array {
  if (from === self) throw new WrongPeerError('a channel needs two different participants');
  assertTerms(m.kind, m.challengeDuration, outcomeOf(m));
  const peerKey = recoverPublicKey(m.sig, openDigestOf({ chain, participants: [from, self] }, m));
  if (!peerKey || addressOf(peerKey) !== from) throw new InvalidSignatureError('proposal not signed by its sender for this chain');
  return peerKey;
}

/**
 * Accepts a proposal to this side: returns the channel record (to persist) and the
 * acceptance (to send after). `peerKey` is what verifyProposal returned for it; terms the
 * agent does not accept (amounts, limits) are its policy, checked in between.
 */
export function acceptOpen(
  signer: Signer,
  m: OpenPropose,
  from: Address,
  chain: OpenContext['chain'],
  peerKey: Uint8Array = verifyProposal(signer.address, m, from, chain),
  shareB: Uint8Array = randomBytes(32),
): { record: ChannelRecord; reply: OpenAccept } {
  const ctx: OpenContext = { chain, participants: [from, signer.address] };
  const params = paramsOf(ctx, m, shareB);
  const state = initialState(params, m);
  const base = { id: state.channelId, params };
  const sig = signer.sign(digestOf(base, state));
  const record = newRecord(base, 1, from, peerKey, { state, sigs: [null, sig] }, { a: m.share, b: shareB });
  return { record, reply: openAcceptOf(record) };
}

/** The proposer completes the open with the peer's signature on version 0 and countersigns it. */
export function completeOpen(signer: Signer, pending: PendingOpen, m: OpenAccept): { record: ChannelRecord; reply: UpdateAccept; state: SignedState } {
  const p = pending.message;
  const peer = pending.context.participants[1];
  const params = paramsOf(pending.context, p, m.shareB);
  const state = initialState(params, p);
  const base = { id: state.channelId, params };
  const digest = digestOf(base, state);
  const peerKey = recoverPublicKey(m.sig, digest);
  if (!peerKey || addressOf(peerKey) !== peer || !verifyDigest(m.sig, digest, peerKey)) {
    throw new InvalidSignatureError('acceptance not signed by the peer');
  }
  const sig = signer.sign(digest);
  const signed: SignedState = { state, sigs: withSig([null, m.sig], 0, sig) };
  const record = newRecord(base, 0, peer, peerKey, signed, { a: p.share, b: m.shareB });
  return { record, reply: { type: MessageType.UpdateAccept, alias: aliasOf(state.channelId), version: 0n, sig }, state: signed };
}
