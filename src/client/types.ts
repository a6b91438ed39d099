import type { Attachment, ChannelRecord } from '../channel/record.ts';
import type { Signer } from '../crypto/keys.ts';
import type { PicopayError, StoreError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Address, ChannelKind, SignedState, State } from '../model/types.ts';
import type { ChannelStorage } from '../store/types.ts';
import type { Transport } from '../transport/types.ts';
import { type Balances, MAX_MESSAGE_BYTES, type OpenPropose } from '../wire/messages.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';

// What the Agent's users see: its options, the owner's policy, its events.

export interface Timing {
  /**
   * First retransmission of an unanswered proposal, and first retry of a refused
   * settlement or of a voucher a waiting payer sends again; each doubles up to maxRetransmitMs.
   */
  retransmitMs: number;
  maxRetransmitMs: number;
  /**
   * How long open() and update() wait for the peer before failing. A request that lost a
   * tie-break is retried until then: a caller never sees a tie-break, only this timeout.
   */
  requestTimeoutMs: number;
}

export const DEFAULT_TIMING: Timing = { retransmitMs: 500, maxRetransmitMs: 8000, requestTimeoutMs: 15_000 };

/** The defaults of AgentOptions.virtualLimits (see there). */
export const DEFAULT_VIRTUAL_LIMITS: Required<VirtualLimits> = { perPeer: 4, minLock: 0n, idleMs: 600_000 };

/** AgentOptions with every default filled in. */
export type Settings = Required<Pick<AgentOptions, 'signer' | 'transport' | 'store' | 'chain' | 'challengeDuration' | 'maxMessageBytes' | 'voucherDurableEvery' | 'virtualFee'>> & {
  virtualLimits: Required<VirtualLimits>;
};

/** The one place the Agent's defaults are applied. */
export function resolveOptions(options: AgentOptions): { settings: Settings; timing: Timing } {
  // An option given as undefined takes its default, as one left out does.
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as AgentOptions;
  const settings: Settings = {
    challengeDuration: MIN_CHALLENGE_DURATION,
    maxMessageBytes: MAX_MESSAGE_BYTES,
    voucherDurableEvery: 0n,
    virtualFee: 0n,
    ...given,
    virtualLimits: { ...DEFAULT_VIRTUAL_LIMITS, ...options.virtualLimits },
  };
  return { settings, timing: { ...DEFAULT_TIMING, ...options.timing } };
}

export interface UpdateContext {
  channel: ChannelRecord;
  current: State;
  proposed: State;
  /** Evidence that came with the proposal (funding or releasing a virtual channel). */
  attachment?: Attachment;
}

/**
 * 'hold' keeps the proposal unanswered until `answerHeld` is called: a gateway holds a
 * device's funding request until the other device's arrives.
 */
export type Decision = boolean | 'hold';

/** The owner's decisions. They run outside any channel step and may be async. */
export interface Policy {
  /** A channel proposed by `from` (already checked to be signed by it, for this agent's chain). */
  acceptOpen(proposal: OpenPropose, from: Address): boolean | Promise<boolean>;
  acceptUpdate(ctx: UpdateContext): Decision | Promise<Decision>;
}

export interface AgentOptions {
  signer: Signer;
  transport: Transport;
  store: ChannelStorage;
  /** The chain and adjudicator this agent's channels are bound to. */
  chain: { chainId: bigint; adjudicator: Address };
  challengeDuration?: bigint;
  policy?: Partial<Policy>;
  timing?: Partial<Timing>;
  logger?: Logger;
  maxMessageBytes?: number;
  /**
   * Stream payees: a voucher is stored (fsynced) once the amount received since the last
   * stored one reaches this (group commit), so a crash costs less than this amount. 0
   * stores every voucher.
   */
  voucherDurableEvery?: bigint;
  /**
   * What this side pays its gateway, in asset 0, each time its ledger channel funds a
   * virtual channel: the gateway's price (`picopay gateway --virtual-fee`), paid in the
   * funding update itself. Default 0.
   */
  virtualFee?: bigint;
  /**
   * Virtual channels other devices open with this one: at most `perPeer` live at once from
   * one peer (default 4), each locking at least `minLock` of asset 0 in total (default 0),
   * so that no one peer can fill the slots of this side's ledger channel (MAX_LOCKED).
   * A virtual channel idle for `idleMs` (no update, no voucher; default 10 minutes) is
   * settled by this side: a stream's payee asks the payer to close it at the highest
   * voucher, and asks again until it does; either side of another virtual channel
   * finalizes it at its latest balances.
   */
  virtualLimits?: VirtualLimits;
}

export interface VirtualLimits {
  perPeer?: number;
  minLock?: bigint;
  idleMs?: number;
}

export interface OpenOptions {
  /** balances[asset] = [mine, peer's]. */
  balances: Balances;
  assets?: Address[];
  kind?: ChannelKind;
  challengeDuration?: bigint;
  /** Virtual channels: the gateway that funds it from both sides' ledger channels. */
  gateway?: Address;
}

export interface UpdatedEvent {
  channel: ChannelRecord;
  state: SignedState;
  /** 'out' for this side's proposal, 'in' for the peer's. */
  direction: 'in' | 'out';
}

export interface AgentEvents {
  opened: [ChannelRecord];
  updated: [UpdatedEvent];
  final: [ChannelRecord];
  /** The channel is done and left memory; the store's archive keeps it (see Agent.retire). */
  retired: [ChannelRecord];
  /** A peer message that was refused; the agent carries on. */
  rejected: [{ peer: Address; error: PicopayError }];
  /** This side's ledger channel locked funds for the virtual channel: it can be used. */
  funded: [ChannelRecord];
  /** The virtual channel's funds went back to this side's ledger channel per its final state. */
  settled: [ChannelRecord];
  /** Stream payee: a higher voucher arrived (cumulative amount paid). */
  voucher: [{ channel: ChannelRecord; cumulative: bigint }];
  /** A watched peer went offline or came back (see Agent.watchPeer). */
  presence: [{ peer: Address; online: boolean }];
  /** A proposal the policy holds; answer it with answerHeld(). */
  held: [UpdateContext];
  /**
   * The store refused a write: the agent has stopped, with its memory possibly ahead of
   * its store. Restart it from the store (it resynchronises with its peers).
   */
  failed: [StoreError];
}
