import type { Attachment, ChannelRecord } from '../channel/record.ts';
import type { SignedState, State } from '../model/types.ts';
import type { StateBody, Update } from '../wire/messages.ts';
import type { Timing } from './types.ts';

// What an agent keeps in memory about one live channel, beside its stored record.

/** One request to change a channel (Agent.update and the virtual-channel protocol). */
export interface Op {
  build: (current: State) => Omit<StateBody, 'version'>;
  attachment?: Attachment;
  resolve: (s: SignedState) => void;
  reject: (e: unknown) => void;
  deadline: NodeJS.Timeout;
  /**
   * Every state this side sent the peer that carries this request's change. One may turn
   * up fully signed after the request went back to the queue (a peer that refused it and
   * signed it anyway): then it is done, and must not be applied again.
   */
  carriedBy: State[];
}

/** A peer's proposal as verifiedProposal returned it, and the record it was checked against. */
export interface Verified {
  on: ChannelRecord;
  state: State;
}

export interface Runtime {
  rec: ChannelRecord;
  queue: Op[];
  inflight: Op | null;
  retransmit: NodeJS.Timeout | null;
  backoff: number;
  /** Set after losing a tie-break: no proposals until it fires or the peer's update lands. */
  paused: NodeJS.Timeout | null;
  /**
   * Set after winning a tie-break: once the winning proposal lands, this side pauses so
   * that the loser's goes next. Without it, a side with a queue wins every tie and the
   * other starves.
   */
  yielding: boolean;
  /**
   * After a tie, until this side's next proposal lands: the highest version the peer was
   * seen to propose (this side proposes above it), and no proposals prepared ahead (each
   * would take a version the peer never sees, and the tie would repeat).
   */
  contended: { peerSigned: bigint } | null;
  /** When this process started tracking the channel. */
  since: number;
  /** When the channel last moved (an update landed, a voucher came or went): idle virtual channels are settled. */
  active: number;
  /** The peer's proposal the policy holds. */
  held: { msg: Update; attachment?: Attachment; verified?: Verified } | null;
  /**
   * Virtual channels: the peer's proposal that came before this side's ledger channel
   * locked the funds (the gateway answers the two devices one after the other); it is
   * answered once they are locked.
   */
  awaitingFunds: Update | null;
  /** Stream payee: the cumulative amount of the last fsynced voucher. */
  durableVoucher: bigint;
  /** The request whose proposal is prepared behind the one in flight. */
  preparedOp: Op | null;
  /** Set while an acceptance waits to be verified after the prepared proposal went out. */
  verifying: Promise<void> | null;
  /** Whether a prepared proposal may leave before the acceptance it follows is verified. */
  sendEarly: boolean;
  /** Stream payer: the highest cumulative amount the payee acknowledged receiving. */
  voucherAcked: bigint;
  /** Stream payer: callers of streamWindow waiting for acknowledgements, and the timer that asks again. */
  windowWaiters: { maxUnacked: bigint; resolve: () => void; reject: (e: unknown) => void }[];
  windowRetry: NodeJS.Timeout | null;
  /** Stream payee: an acknowledgement is due at the end of this turn. */
  ackDue: boolean;
}

/** The memory of a channel loaded from the store or just opened. */
export function newRuntime(loaded: ChannelRecord, timing: Timing): Runtime {
  // A proposal prepared before a restart has no request any more: unsent, it is dropped
  // (its version stays signed); sent, it stays out, for the peer may still sign it.
  const rec = loaded.prepared && !loaded.prepared.sent ? { ...loaded, prepared: null } : loaded;
  return {
    rec,
    queue: [],
    inflight: null,
    retransmit: null,
    backoff: timing.retransmitMs,
    paused: null,
    yielding: false,
    contended: null,
    since: Date.now(),
    active: Date.now(),
    held: null,
    awaitingFunds: null,
    durableVoucher: rec.voucher?.cumulative ?? 0n,
    preparedOp: null,
    verifying: null,
    sendEarly: true,
    // After a restart, what was paid counts as received: the payee acknowledges anew as vouchers come.
    voucherAcked: rec.voucher?.cumulative ?? 0n,
    windowWaiters: [],
    windowRetry: null,
    ackDue: false,
  };
}

/** An accepted open whose proposer has had time enough to complete it, and did not. */
export function abandoned(rt: Runtime, timing: Timing): boolean {
  return Date.now() - rt.since > 4 * timing.requestTimeoutMs;
}
