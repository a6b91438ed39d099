import type { Address, ChannelKind, Signature, SubAlloc } from '../model/types.ts';

/** Every envelope starts with this; a peer speaking another version is refused. */
export const PROTOCOL_VERSION = 2;

/**
 * Default size limit, checked before any decoding. The largest message the schema allows
 * (a Sync whose two states each lock MAX_LOCKED channels in MAX_ASSETS assets, every
 * amount at 2^256 - 1) is about 21.7 KB; everyday messages are a few hundred bytes.
 */
export const MAX_MESSAGE_BYTES = 24 * 1024;

export const MessageType = {
  OpenPropose: 1,
  OpenAccept: 2,
  OpenReject: 3,
  Update: 4,
  UpdateAccept: 5,
  UpdateReject: 6,
  Sync: 7,
  FundRequest: 8,
  SettleRequest: 9,
  Voucher: 10,
  CloseRequest: 11,
  VoucherAck: 12,
  ClaimRequest: 13,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** Why a proposal was refused; travels as a small integer. */
export const RejectReason = {
  Conflict: 1,
  StaleVersion: 2,
  InvalidSignature: 3,
  NotConserved: 4,
  InvalidAllocation: 5,
  ChannelFinal: 6,
  Policy: 7,
  UnknownChannel: 8,
  Busy: 9,
  InvalidTerms: 10,
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

/**
 * Eight bytes of the channel id. Both sides hold the full id; the alias keeps every
 * message after the open short. An open whose alias collides with a live channel of
 * the same pair is refused.
 */
export type Alias = Uint8Array;

export type Balances = readonly (readonly [bigint, bigint])[];

/**
 * Proposes a channel from the sender to the receiver, on the chain and adjudicator both
 * are bound to: those three are not sent, and the signature covers them.
 */
export interface OpenPropose {
  type: typeof MessageType.OpenPropose;
  /** The proposer's 32-byte random nonce share; also names the proposal. */
  share: Uint8Array;
  challengeDuration: bigint;
  kind: ChannelKind;
  assets: readonly Address[];
  balances: Balances;
  /** The proposer's signature over openDigest. */
  sig: Signature;
  /** Virtual channels: the gateway whose ledger channels fund it (null for a ledger channel). */
  gateway: Address | null;
}

export interface OpenAccept {
  type: typeof MessageType.OpenAccept;
  shareA: Uint8Array;
  shareB: Uint8Array;
  /** The accepter's signature on the initial state (version 0). */
  sig: Signature;
}

export interface OpenReject {
  type: typeof MessageType.OpenReject;
  shareA: Uint8Array;
  reason: RejectReason;
  /** The refuser's signature over controlDigest (subject: the share). */
  sig: Signature;
}

/** The parts of a state that change; the rest is known from the channel. */
export interface StateBody {
  version: bigint;
  balances: Balances;
  locked: readonly SubAlloc[];
  isFinal: boolean;
}

export interface Update extends StateBody {
  type: typeof MessageType.Update;
  alias: Alias;
  sig: Signature;
}

export interface UpdateAccept {
  type: typeof MessageType.UpdateAccept;
  alias: Alias;
  version: bigint;
  sig: Signature;
}

export interface UpdateReject {
  type: typeof MessageType.UpdateReject;
  alias: Alias;
  version: bigint;
  reason: RejectReason;
  /** The refuser's signature over controlDigest (subject: the channel id). */
  sig: Signature;
}

/**
 * Sent on (re)connect: the sender's latest fully signed state and its own proposal in
 * flight, if any. The newest fully signed state wins; the proposal is then handled as
 * an Update.
 */
export interface Sync {
  type: typeof MessageType.Sync;
  alias: Alias;
  current: StateBody & { sigs: readonly [Signature, Signature] };
  staged: (StateBody & { sig: Signature }) | null;
}

/** What the gateway needs to check a virtual channel it is asked to fund. */
export interface VirtualTerms {
  /** The other participant; the sender is the one at `index`. */
  peer: Address;
  index: 0 | 1;
  challengeDuration: bigint;
  nonce: bigint;
  kind: ChannelKind;
  /** balances[asset] = [participant 0's, participant 1's] in the virtual channel. */
  balances: Balances;
  /**
   * The sender's signature on the virtual channel's version 0, which lets the gateway force
   * a bidirectional channel on-chain. A stream needs none (a voucher resolves it).
   */
  sig: Signature | null;
}

/**
 * A device asks the gateway to lock funds for a virtual channel in their ledger
 * channel: the proposal of that ledger update, with the virtual channel's terms.
 */
export interface FundRequest extends Omit<Update, 'type'> {
  type: typeof MessageType.FundRequest;
  vc: VirtualTerms;
}

/** The final state of a virtual channel, signed by both of its participants. */
export interface VirtualFinal {
  id: Uint8Array;
  version: bigint;
  balances: Balances;
  sigs: readonly [Signature, Signature];
}

/** A device asks the gateway to release a virtual channel's funds per its final state. */
export interface SettleRequest extends Omit<Update, 'type'> {
  type: typeof MessageType.SettleRequest;
  vc: VirtualFinal;
}

/** A stream's voucher, as its payee shows it: what the payer signed it has paid in total. */
export interface VoucherClaim {
  id: Uint8Array;
  cumulative: bigint;
  /** The payer's voucher signature. */
  sig: Signature;
}

/**
 * A stream's payee whose payer does not answer asks the gateway to release the stream's
 * lock in their ledger channel per the highest voucher it holds. The gateway, which
 * cannot hear the payer either, secures the voucher on-chain first (see
 * src/client/intermediary.ts): the stream can then resolve at nothing less.
 */
export interface ClaimRequest extends Omit<Update, 'type'> {
  type: typeof MessageType.ClaimRequest;
  vc: VoucherClaim;
}

/** Stream channels: "I, the payer, have paid `cumulative` of asset 0 in total". No reply. */
export interface Voucher {
  type: typeof MessageType.Voucher;
  alias: Alias;
  cumulative: bigint;
  sig: Signature;
}

/**
 * Stream channels: the payee has received and verified vouchers up to `cumulative`. It
 * paces the payer (see Agent.streamWindow) and carries no signature, because a forged one
 * cannot change what the payer owes or holds: one above what was paid is refused, and one
 * at or below it can only let the payer send its next vouchers sooner, which it would pay
 * anyway for what it receives.
 */
export interface VoucherAck {
  type: typeof MessageType.VoucherAck;
  alias: Alias;
  cumulative: bigint;
}

/** Stream channels: the payee asks the payer to propose the final state. */
export interface CloseRequest {
  type: typeof MessageType.CloseRequest;
  alias: Alias;
  /**
   * The highest voucher the payee holds when it asks: the payer closes only on a request
   * that names at least what it has paid, so an old one, replayed, is spent.
   */
  cumulative: bigint;
  /** The payee's signature over controlDigest (subject: the channel id, version: cumulative). */
  sig: Signature;
}

export type Message =
  | OpenPropose
  | OpenAccept
  | OpenReject
  | Update
  | UpdateAccept
  | UpdateReject
  | Sync
  | FundRequest
  | SettleRequest
  | ClaimRequest
  | Voucher
  | VoucherAck
  | CloseRequest;
