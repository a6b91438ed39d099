import type { Signer } from '../crypto/keys.ts';
import { recoverAddress, verifyDigest } from '../crypto/verify.ts';
import { type Control, controlDigest, domainSeparator, toHex } from '../model/hash.ts';
import { type Address, NATIVE_ASSET } from '../model/types.ts';
import { type CloseRequest, MessageType, type OpenReject, type RejectReason, type UpdateReject } from '../wire/messages.ts';
import { aliasOf, type ChannelRecord, separatorOf } from './record.ts';

// Messages that make a party stop or act without carrying a state: refusals of an update
// or an open, and a stream payee's close request. Each is signed by its sender, so one
// that anyone who can publish on the broker forges, or sends under another's name,
// changes nothing: its receiver checks the signature before it acts.

function control(rec: ChannelRecord, messageType: number, version: bigint, reason: number): Control {
  return { subject: rec.id, version, messageType, reason };
}

/** This side refuses the peer's proposal at `version`. */
export function updateReject(rec: ChannelRecord, signer: Signer, version: bigint, reason: RejectReason): UpdateReject {
  const sig = signer.sign(controlDigest(separatorOf(rec), control(rec, MessageType.UpdateReject, version, reason)));
  return { type: MessageType.UpdateReject, alias: aliasOf(rec.id), version, reason, sig };
}

/** The stream payee asks the payer to propose the final state, naming the highest voucher it holds. */
export function closeRequest(rec: ChannelRecord, signer: Signer): CloseRequest {
  const cumulative = rec.voucher?.cumulative ?? 0n;
  const sig = signer.sign(controlDigest(separatorOf(rec), control(rec, MessageType.CloseRequest, cumulative, 0)));
  return { type: MessageType.CloseRequest, alias: aliasOf(rec.id), cumulative, sig };
}

/** Whether a refusal or close request on `rec` is signed by the peer. */
export function signedByPeer(rec: ChannelRecord, msg: UpdateReject | CloseRequest): boolean {
  const c = msg.type === MessageType.UpdateReject ? control(rec, msg.type, msg.version, msg.reason) : control(rec, msg.type, msg.cumulative, 0);
  return verifyDigest(msg.sig, controlDigest(separatorOf(rec), c), rec.peerKey);
}

/**
 * An open refusal binds no chain: the refuser may be on another one (that can be why it
 * refuses). It names the proposal by its share, random and never reused, so it cannot be
 * replayed against another proposal.
 */
const NO_CHAIN = domainSeparator({ chainId: 0n, adjudicator: NATIVE_ASSET });

function openRejectDigest(shareA: Uint8Array, reason: number): Uint8Array {
  return controlDigest(NO_CHAIN, { subject: toHex(shareA), version: 0n, messageType: MessageType.OpenReject, reason });
}

/** This side refuses an open proposal (named by its share). */
export function openReject(signer: Signer, shareA: Uint8Array, reason: RejectReason): OpenReject {
  return { type: MessageType.OpenReject, shareA, reason, sig: signer.sign(openRejectDigest(shareA, reason)) };
}

/** Whether an open refusal is signed by `peer`, the one the proposal went to. */
export function openRejectedBy(msg: OpenReject, peer: Address): boolean {
  return recoverAddress(msg.sig, openRejectDigest(msg.shareA, msg.reason)) === peer;
}
