import { domainSeparator, outcomeHash, stateDigest } from '../model/hash.ts';
import type { Address, Bytes32, Params, Signature, SignedState, State } from '../model/types.ts';
import { MessageType, type StateBody, type Update, type VirtualFinal, type VirtualTerms, type VoucherClaim } from '../wire/messages.ts';

/**
 * Everything a party keeps about one channel, and all a dispute needs: the latest state
 * with every signature it has, its own proposal in flight, and the highest version it
 * ever signed. Older states are not kept: the store stays the same size over a
 * channel's life.
 */
export interface ChannelRecord {
  id: Bytes32;
  params: Params;
  /** This party's index in params.participants. */
  idx: 0 | 1;
  peer: Address;
  /** The peer's uncompressed public key, learned from its first signature. */
  peerKey: Uint8Array;
  /** 'opening' until version 0 carries both signatures; 'final' once a final state does. */
  phase: 'opening' | 'open' | 'final';
  current: SignedState;
  /** This party's own proposal in flight, signed by it alone, with what travels beside it. */
  staged: { state: State; sig: Signature; attachment?: Attachment } | null;
  /**
   * The next proposal, signed and stored while `staged` waits for the peer. It goes out
   * when an acceptance of `staged` arrives (`sent`), before that acceptance is verified;
   * from then on the peer's answer to it answers both (see update.ts).
   */
  prepared?: { state: State; sig: Signature; sent?: boolean } | null;
  /** Never sign a different state at or below this version (-1: nothing signed yet). */
  highestSigned: bigint;
  /** Both nonce shares, so a lost open message can be answered again. */
  shares: { a: Uint8Array; b: Uint8Array };
  /** Virtual channels: the gateway, and this side's ledger channel with it that funds this one. */
  virtual?: { gateway: Address; parent: Bytes32 };
  /** Stream channels: the payer's latest voucher, or the highest the payee holds. */
  voucher?: { cumulative: bigint; sig: Signature };
}

/** Evidence sent with a parent update that funds or releases a virtual channel. */
export type Attachment = { fund: VirtualTerms } | { settle: VirtualFinal } | { claim: VoucherClaim };

const separators = new Map<string, Uint8Array>();

/** The EIP-712 domain separator of a channel's chain and adjudicator, computed once per pair (not per channel: the cache stays small). */
export function separatorOf(rec: Pick<ChannelRecord, 'params'>): Uint8Array {
  const key = `${rec.params.chainId}:${rec.params.adjudicator.toLowerCase()}`;
  let sep = separators.get(key);
  if (!sep) {
    sep = domainSeparator(rec.params);
    separators.set(key, sep);
  }
  return sep;
}

export function digestOf(rec: Pick<ChannelRecord, 'id' | 'params'>, state: State): Uint8Array {
  return stateDigest(separatorOf(rec), state);
}

export function aliasOf(id: Bytes32): Uint8Array {
  return Uint8Array.from(Buffer.from(id.slice(2, 18), 'hex'));
}

export function aliasKey(alias: Uint8Array): string {
  return Buffer.from(alias).toString('hex');
}

export function stateFromBody(rec: ChannelRecord, body: StateBody): State {
  return {
    channelId: rec.id,
    version: body.version,
    outcome: { assets: rec.current.state.outcome.assets, balances: body.balances, locked: body.locked },
    isFinal: body.isFinal,
  };
}

export function bodyOf(state: State): StateBody {
  return { version: state.version, balances: state.outcome.balances, locked: state.outcome.locked, isFinal: state.isFinal };
}

/** One of this side's proposals as the Update that carries it. */
export function proposalMessage(rec: ChannelRecord, proposal: { state: State; sig: Signature }): Update {
  return { type: MessageType.Update, alias: aliasOf(rec.id), ...bodyOf(proposal.state), sig: proposal.sig };
}

/** This side's staged proposal as the Update that carries it. */
export function stagedMessage(rec: ChannelRecord): Update {
  return proposalMessage(rec, rec.staged!);
}

/** This side's latest proposal the peer may hold: the prepared one once sent, else the staged one. */
export function latestProposal(rec: ChannelRecord): { state: State; sig: Signature } | null {
  return rec.prepared?.sent ? rec.prepared : rec.staged;
}

export function isFullySigned(s: SignedState): s is { state: State; sigs: readonly [Signature, Signature] } {
  return s.sigs[0] !== null && s.sigs[1] !== null;
}

export function withSig(sigs: SignedState['sigs'], idx: 0 | 1, sig: Signature): readonly [Signature | null, Signature | null] {
  return idx === 0 ? [sig, sigs[1]] : [sigs[0], sig];
}

export function sameState(a: State, b: State): boolean {
  return (
    a.channelId === b.channelId &&
    a.version === b.version &&
    a.isFinal === b.isFinal &&
    outcomeHash(a.outcome) === outcomeHash(b.outcome)
  );
}
