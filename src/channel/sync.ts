import type { Signer } from '../crypto/keys.ts';
import { verifyDigest } from '../crypto/verify.ts';
import { InvalidSignatureError } from '../errors.ts';
import { assertConserved, assertWellFormed } from '../model/allocation.ts';
import type { SignedState } from '../model/types.ts';
import { MessageType, type Sync, type Update } from '../wire/messages.ts';
import { aliasOf, bodyOf, type ChannelRecord, digestOf, isFullySigned, latestProposal, proposalMessage, sameState, stateFromBody } from './record.ts';

// Resynchronisation after a reconnect or a restart: each side offers its latest fully
// signed state and its own proposal in flight. The newest fully signed state wins; the
// peer's proposal is then handled like any Update.

/** This side's offer, or null while it holds no fully signed state yet. */
export function makeSync(rec: ChannelRecord): Sync | null {
  const cur = rec.current;
  if (!isFullySigned(cur)) return null;
  const latest = latestProposal(rec);
  return {
    type: MessageType.Sync,
    alias: aliasOf(rec.id),
    current: { ...bodyOf(cur.state), sigs: cur.sigs },
    staged: latest ? { ...bodyOf(latest.state), sig: latest.sig } : null,
  };
}

export interface SyncResult {
  /** Set when the record changed and must be persisted. */
  record: ChannelRecord | null;
  /** The peer's newer state that this side adopted. */
  adopted: SignedState | null;
  /**
   * What became of this side's staged proposal if the adopted state settled it:
   * 'bothCompleted' when the adopted state is the sent prepared proposal built on it.
   */
  staged: 'completed' | 'bothCompleted' | 'superseded' | null;
  /** Sync or Update messages to send back. */
  replies: (Sync | Update)[];
  /** The peer's own proposal, to be handled as an incoming Update. */
  peerProposal: Update | null;
}

export function receiveSync(rec: ChannelRecord, signer: Signer, msg: Sync): SyncResult {
  const result: SyncResult = { record: null, adopted: null, staged: null, replies: [], peerProposal: null };
  let r = rec;
  const theirs = stateFromBody(rec, msg.current);
  const mineVersion = rec.current.state.version;
  const completesOpening = rec.phase === 'opening' && theirs.version === mineVersion;
  if (theirs.version > mineVersion || completesOpening) {
    const digest = digestOf(rec, theirs);
    const peerIdx = rec.idx === 0 ? 1 : 0;
    // Both signatures, our own included: a forged offer could claim a state we never signed.
    if (!verifyDigest(msg.current.sigs[peerIdx], digest, rec.peerKey) || !verifyDigest(msg.current.sigs[rec.idx], digest, signer.publicKey)) {
      throw new InvalidSignatureError('offered state is not signed by both participants');
    }
    assertWellFormed(theirs.outcome);
    assertConserved(rec.current.state.outcome, theirs.outcome);
    const adopted: SignedState = { state: theirs, sigs: msg.current.sigs };
    // A prepared proposal not yet sent was built on what the adopted state replaces: dropped.
    const sent = rec.prepared?.sent ? rec.prepared : null;
    let staged = rec.staged;
    let prepared = sent;
    if (staged && staged.state.version <= theirs.version) {
      if (sent && sent.state.version <= theirs.version) {
        result.staged = sameState(sent.state, theirs) ? 'bothCompleted' : 'superseded';
        staged = null;
      } else {
        result.staged = sameState(staged.state, theirs) ? 'completed' : 'superseded';
        // The sent prepared proposal is still out: it becomes the staged one.
        staged = sent && { state: sent.state, sig: sent.sig };
      }
      prepared = null;
    }
    r = {
      ...rec,
      current: adopted,
      staged,
      prepared,
      phase: theirs.isFinal ? 'final' : 'open',
      highestSigned: rec.highestSigned > theirs.version ? rec.highestSigned : theirs.version,
    };
    result.record = r;
    result.adopted = adopted;
  } else if (theirs.version < mineVersion) {
    const mine = makeSync(r);
    if (mine) result.replies.push(mine);
  }
  if (msg.staged && msg.staged.version >= r.current.state.version) {
    result.peerProposal = { type: MessageType.Update, alias: msg.alias, ...msg.staged };
  }
  const latest = latestProposal(r);
  if (latest && msg.current.version < latest.state.version && result.replies.length === 0) {
    result.replies.push(proposalMessage(r, latest));
  }
  return result;
}
