import { EventEmitter } from 'node:events';
import { acceptOpen, completeOpen, openAcceptOf, type PendingOpen, proposeOpen, verifyProposal } from '../channel/open.ts';
import { closeRequest, openReject, openRejectedBy, signedByPeer } from '../channel/control.ts';
import { aliasKey, aliasOf, type Attachment, type ChannelRecord, sameState, stagedMessage, stateFromBody } from '../channel/record.ts';
import { lockBody, receiveVoucher, signVoucher, streamFinalBody, unlockBody, voucherMessage } from '../channel/virtual.ts';
import { makeSync, receiveSync } from '../channel/sync.ts';
import { type AcceptResult, prepare, propose, reasonOf, receiveAccept, receiveReject, receiveUpdate, refuse, releasePrepared, verifiedProposal } from '../channel/update.ts';
import {
  AliasCollisionError,
  ChannelClosedError,
  InvalidAllocationError,
  OpenRejectedError,
  PicopayError,
  ProtocolError,
  ProtocolTimeoutError,
  StoreError,
  UnknownChannelError,
  UpdateConflictError,
  WrongPeerError,
} from '../errors.ts';
import { MAX_LOCKED, transfer } from '../model/allocation.ts';
import { fromHex, toHex } from '../model/hash.ts';
import { type Address, type Bytes32, ChannelKind, NATIVE_ASSET, type SignedState, type State } from '../model/types.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { silentLogger, type Logger } from '../log.ts';
import { decodeMessage, encodeMessage } from '../wire/codec.ts';
import {
  MAX_MESSAGE_BYTES,
  type Message,
  MessageType,
  type OpenAccept,
  type OpenPropose,
  type OpenReject,
  RejectReason,
  type StateBody,
  type Sync,
  type Update,
  type UpdateAccept,
  type UpdateReject,
  type Voucher,
  type VoucherAck,
} from '../wire/messages.ts';
import { assertEvidencedLocks, lockDiff } from '../channel/intermediary.ts';
import { Outbox, type Waiting } from './outbox.ts';
import { Registry } from './registry.ts';
import { kindRule, receiveOnly, reliesOn, withAttachment } from './rules.ts';
import { type AgentEvents, type AgentOptions, DEFAULT_TIMING, DEFAULT_VIRTUAL_LIMITS, type OpenOptions, type Policy, type Timing, type VirtualLimits } from './types.ts';

export { DEFAULT_TIMING } from './types.ts';
export type { AgentEvents, AgentOptions, Decision, OpenOptions, Policy, Timing, UpdateContext, UpdatedEvent } from './types.ts';


interface Op {
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

interface Runtime {
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
  earlyRelease: boolean;
  /** Stream payer: the highest cumulative amount the payee acknowledged receiving. */
  voucherAcked: bigint;
  /** Stream payer: callers of streamWindow waiting for acknowledgements, and the timer that asks again. */
  windowWaiters: { maxUnacked: bigint; resolve: () => void; reject: (e: unknown) => void }[];
  windowRetry: NodeJS.Timeout | null;
  /** Stream payee: an acknowledgement is due at the end of this turn. */
  ackDue: boolean;
}

/** A peer's proposal as verifiedProposal returned it, and the record it was checked against. */
interface Verified {
  on: ChannelRecord;
  state: State;
}

interface OpenWaiter {
  pending: PendingOpen;
  resolve: (rec: ChannelRecord) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout | null;
  backoff: number;
}

/**
 * A party's channels and the protocol between it and its peers. Every protocol step is
 * synchronous: compute with the pure functions of src/channel, persist in one
 * transaction, then send. So steps never interleave, and nothing is sent that is not
 * stored. User code (policy, event listeners) runs only between steps.
 */
export class Agent extends EventEmitter<AgentEvents> {
  readonly address: Address;
  readonly #o: Required<Pick<AgentOptions, 'signer' | 'transport' | 'store' | 'chain' | 'challengeDuration' | 'maxMessageBytes' | 'voucherDurableEvery' | 'virtualFee'>> & { virtualLimits: Required<VirtualLimits> };
  readonly #policy: Policy;
  readonly #timing: Timing;
  readonly #log: Logger;
  readonly #channels = new Registry<Runtime>();
  readonly #opens = new Map<string, OpenWaiter>();
  readonly #outbox: Outbox;
  /** Funding requests in flight, by virtual channel: openVirtual fails as soon as its request does. */
  readonly #funding = new Map<Bytes32, Promise<SignedState>>();
  /** Virtual channels whose release into the ledger channel is being asked for. */
  readonly #settling = new Set<Bytes32>();
  /** Why the agent stopped, once it has: what every later request fails with. */
  #haltedBy: PicopayError | null = null;
  /** Looks for idle virtual channels now and then (see virtualLimits.idleMs). */
  #idleSweep: NodeJS.Timeout | null = null;

  get #stopped(): boolean {
    return this.#haltedBy !== null;
  }

  /** Every request that starts work checks this first: a stopped agent takes none. */
  #assertLive(): void {
    if (this.#haltedBy) throw this.#haltedBy;
  }

  constructor(options: AgentOptions) {
    super();
    this.#o = { challengeDuration: MIN_CHALLENGE_DURATION, maxMessageBytes: MAX_MESSAGE_BYTES, voucherDurableEvery: 0n, virtualFee: 0n, ...options, virtualLimits: { ...DEFAULT_VIRTUAL_LIMITS, ...options.virtualLimits } };
    this.address = options.signer.address;
    this.#policy = {
      acceptOpen: () => true,
      acceptUpdate: receiveOnly,
      ...options.policy,
    };
    this.#timing = { ...DEFAULT_TIMING, ...options.timing };
    this.#log = (options.logger ?? silentLogger).child({ agent: this.address });
    this.#outbox = new Outbox(options.store, (err, waiting) => this.#storeFailed(err, waiting));
  }

  /** Loads every channel from the store, listens, and resynchronises with each peer. */
  start(): void {
    for (const rec of this.#o.store.loadChannels()) this.#track(rec);
    for (const pending of this.#o.store.loadPendingOpens()) this.#resumeOpen(pending);
    this.#o.transport.setHandler({
      message: (from, frame) => this.#receive(from, frame),
      connected: () => this.resync(),
    });
    this.resync();
    for (const rt of this.#channels.all()) this.#resumeVirtual(rt);
    const idleMs = this.#o.virtualLimits.idleMs;
    this.#idleSweep = setInterval(() => this.#settleIdle(), Math.max(10, Math.min(idleMs / 4, 30_000)));
    this.#idleSweep.unref();
    this.#log.info({ channels: this.#channels.size }, 'agent started');
  }

  /** Stops timers and fails waiting requests. The store and transport stay the caller's. */
  stop(): void {
    this.#outbox.flush();
    this.#halt(new ProtocolTimeoutError('agent stopped'));
  }

  /** Stops everything; every request still open fails with `reason`. */
  #halt(reason: PicopayError): void {
    this.#haltedBy = reason;
    if (this.#idleSweep) clearInterval(this.#idleSweep);
    for (const rt of this.#channels.all()) this.#windDown(rt, reason);
    for (const w of this.#opens.values()) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(reason);
    }
    this.#opens.clear();
  }

  /** The live channels (retired ones are in the store's archive). */
  channels(): ChannelRecord[] {
    return this.#channels.all().map((rt) => rt.rec);
  }

  /** The live channels with `peer`. */
  channelsWith(peer: Address): ChannelRecord[] {
    return this.#channels.withPeer(peer).map((rt) => rt.rec);
  }

  /** A channel, live or retired. */
  channel(id: Bytes32): ChannelRecord {
    const rec = this.#channels.get(id)?.rec ?? this.#o.store.loadChannel(id);
    if (!rec) throw new UnknownChannelError(`no channel ${id}`);
    return rec;
  }

  /**
   * Retires a channel that is done: a final one that locks nothing, once what it settles
   * is on-chain (the gateway calls this after its close lands). It leaves memory and the
   * resync set; the store archives it, and a peer that resynchronises later still gets
   * its final state. Virtual channels retire by themselves once settled.
   */
  retire(id: Bytes32): void {
    if (!this.#channels.has(id) && this.#o.store.loadChannel(id)) return; // retired already
    const rt = this.#runtime(id);
    const rec = rt.rec;
    if (rec.phase !== 'final' || rec.staged || rec.current.state.outcome.locked.length > 0 || this.isFunded(id)) {
      throw new ChannelClosedError(`channel ${id} is not final, or its funds are still locked`);
    }
    this.#retire(rt);
  }

  /** Sends every channel's latest state to its peer; each side then adopts the newest. */
  resync(): void {
    for (const rt of this.#channels.all()) {
      const sync = makeSync(rt.rec);
      if (sync) this.#send(rt.rec.peer, sync);
      if (rt.rec.staged || rt.rec.phase === 'opening') this.#armRetransmit(rt);
    }
  }

  /** Proposes a channel to `peer` and resolves once both have signed its initial state. */
  async open(peer: Address, options: OpenOptions): Promise<ChannelRecord> {
    this.#assertLive();
    const pending = proposeOpen(this.#o.signer, {
      peer: peer.toLowerCase() as Address,
      chainId: this.#o.chain.chainId,
      adjudicator: this.#o.chain.adjudicator,
      challengeDuration: options.challengeDuration ?? this.#o.challengeDuration,
      kind: options.kind ?? ChannelKind.Ledger,
      assets: options.assets ?? [NATIVE_ASSET],
      balances: options.balances,
      gateway: options.gateway?.toLowerCase() as Address | undefined,
    });
    const failed = this.#persist(() => this.#o.store.savePendingOpen(toHex(pending.message.share), pending));
    if (failed) throw failed;
    return this.#resumeOpen(pending);
  }

  /**
   * Opens a virtual channel with `peer` through `gateway`, which must hold an open ledger
   * channel with each of them, and resolves once this side's ledger channel has locked
   * the funds. balances[asset] = [mine, peer's]; in a stream channel the opener pays.
   */
  async openVirtual(peer: Address, options: OpenOptions & { gateway: Address }): Promise<ChannelRecord> {
    const parent = this.#parentFor(options.gateway);
    if (this.#fundingLoad(parent) >= MAX_LOCKED) throw new InvalidAllocationError(`the ledger channel with ${options.gateway} already funds ${MAX_LOCKED} virtual channels`);
    const kind = options.kind ?? ChannelKind.Virtual;
    const vc = await this.open(peer, { ...options, kind, assets: [...parent.rec.current.state.outcome.assets] });
    await this.#funding.get(vc.id);
    return this.#when(vc.id, 'funded', () => this.isFunded(vc.id));
  }

  /** Whether this side's ledger channel locks the virtual channel's funds (it may be used). */
  isFunded(id: Bytes32): boolean {
    const vc = this.#channels.get(id)?.rec;
    if (!vc) return false; // retired: settled, or never funded
    const parent = vc.virtual && this.#channels.get(vc.virtual.parent);
    return !!parent && parent.rec.current.state.outcome.locked.some((l) => l.id === id);
  }

  /** Whether a final virtual channel's funds are back in this side's ledger channel. */
  isSettled(id: Bytes32): boolean {
    const vc = this.channel(id);
    return vc.phase === 'final' && !this.isFunded(id);
  }

  /** Stream payer: pays `amount` more; one message, no reply. Returns the new cumulative total. */
  payStream(id: Bytes32, amount: bigint): bigint {
    this.#assertLive();
    const rt = this.#runtime(id);
    if (!this.isFunded(id)) throw new ChannelClosedError('virtual channel is not funded yet');
    const { record, message } = signVoucher(rt.rec, this.#o.signer, (rt.rec.voucher?.cumulative ?? 0n) + amount);
    rt.active = Date.now();
    // Losing a voucher can only make this side pay less: no fsync needed before sending.
    this.#commit(rt, record, false);
    this.#send(rt.rec.peer, message);
    return record.voucher!.cumulative;
  }

  /** Stream payer: what the payee has not acknowledged receiving yet. */
  streamUnacked(id: Bytes32): bigint {
    return this.#unacked(this.#runtime(id));
  }

  #unacked(rt: Runtime): bigint {
    return (rt.rec.voucher?.cumulative ?? 0n) - rt.voucherAcked;
  }

  /**
   * Stream payer: resolves once at most `maxUnacked` is unacknowledged. A payer that
   * awaits it before each payStream never runs further ahead of the payee than that, so
   * a slow payee's backlog (at the broker, or in its own queue) stays bounded. While it
   * waits, the latest voucher is sent again now and then: the payee acknowledges even a
   * repeat, so a lost acknowledgement does not stall the stream.
   */
  async streamWindow(id: Bytes32, maxUnacked: bigint): Promise<void> {
    this.#assertLive();
    const rt = this.#runtime(id);
    if (this.#unacked(rt) <= maxUnacked) return;
    return new Promise((resolve, reject) => {
      rt.windowWaiters.push({ maxUnacked, resolve, reject });
      this.#armWindowRetry(rt, this.#timing.retransmitMs);
    });
  }

  /**
   * Ends a virtual channel: agrees its final state with the peer (for a stream, what the
   * latest voucher says), then this side's ledger channel takes its funds back through
   * the gateway. Resolves once that is done.
   */
  async settleVirtual(id: Bytes32): Promise<ChannelRecord> {
    // Settled and retired already (the peer asked first): done.
    if (!this.#channels.has(id) && this.isSettled(id)) return this.channel(id);
    const rt = this.#runtime(id);
    if (!rt.rec.virtual) throw new UnknownChannelError(`${id} is not a virtual channel`);
    if (rt.rec.phase !== 'final') {
      if (rt.rec.params.kind === ChannelKind.Stream) {
        if (rt.rec.idx === 0) await this.update(id, () => streamFinalBody(rt.rec, rt.rec.voucher?.cumulative ?? 0n));
        else this.#send(rt.rec.peer, closeRequest(rt.rec, this.#o.signer));
      } else {
        await this.finalize(id);
      }
    }
    return this.#when(id, 'settled', () => this.isSettled(id));
  }

  /** Answers a proposal the policy held: accept signs and persists it, otherwise it is refused. */
  release(id: Bytes32, version: bigint, accept: boolean, reason: RejectReason = RejectReason.InvalidTerms): void {
    const rt = this.#runtime(id);
    const held = rt.held;
    if (!held || held.msg.version !== version) return;
    rt.held = null;
    if (accept) return this.#answer(rt, held.msg, held.verified);
    this.#refuse(rt, version, reason);
  }

  /** Pays `amount` of asset `asset` to the peer; resolves with the state both signed. */
  pay(id: Bytes32, amount: bigint, asset = 0): Promise<SignedState> {
    const idx = this.#runtime(id).rec.idx;
    return this.update(id, (s) => {
      const outcome = transfer(s.outcome, idx, amount, asset);
      return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
    });
  }

  /** Signs a final state with the current balances: nothing can follow it, and it concludes on-chain at once. */
  finalize(id: Bytes32): Promise<SignedState> {
    return this.update(id, (s) => ({ balances: s.outcome.balances, locked: s.outcome.locked, isFinal: true }));
  }

  /**
   * Proposes the state `build` derives from the current one. Requests on a channel run
   * one at a time, in order; `build` sees the state as it is when its turn comes.
   */
  async update(id: Bytes32, build: Op['build'], attachment?: Attachment): Promise<SignedState> {
    this.#assertLive();
    const rt = this.#runtime(id);
    // Locks change only with the evidence that names them (the virtual-channel protocol).
    const checked: Op['build'] = (s) => {
      const body = build(s);
      assertEvidencedLocks(s, { outcome: { assets: s.outcome.assets, balances: body.balances, locked: body.locked } }, attachment, this.address, this.#o.chain);
      return body;
    };
    return new Promise<SignedState>((resolve, reject) => {
      const op: Op = {
        build: checked,
        attachment,
        resolve,
        reject,
        carriedBy: [],
        deadline: setTimeout(() => this.#expire(rt, op), this.#timing.requestTimeoutMs),
      };
      rt.queue.push(op);
      this.#pump(rt);
    });
  }

  // ---- outgoing requests ----

  #pump(rt: Runtime): void {
    while (!this.#stopped && !rt.paused && !rt.inflight && !rt.rec.staged && rt.queue.length > 0) {
      const op = rt.queue.shift()!;
      let proposal;
      try {
        proposal = propose(rt.rec, this.#o.signer, op.build(rt.rec.current.state), rt.contended?.peerSigned);
      } catch (err) {
        this.#fail(op, err);
        continue;
      }
      const record = op.attachment ? { ...proposal.record, staged: { ...proposal.record.staged!, attachment: op.attachment } } : proposal.record;
      this.#commit(rt, record);
      rt.inflight = op;
      op.carriedBy.push(proposal.state);
      this.#send(rt.rec.peer, withAttachment(proposal.message, op.attachment));
      this.#armRetransmit(rt);
    }
    // Only after this turn's messages have left: preparing costs a signature and an fsync.
    if (rt.inflight && rt.queue.length > 0) setImmediate(() => this.#prepareNext(rt));
  }

  /**
   * While a proposal waits for the peer, signs and stores the next queued one on top of it,
   * so that it leaves the moment the first is accepted: the signing and the fsync happen
   * while the peer works, not after.
   */
  #prepareNext(rt: Runtime): void {
    const staged = rt.rec.staged;
    const op = rt.queue[0];
    if (this.#stopped || rt.paused || rt.contended || !rt.inflight || rt.preparedOp || !staged || staged.attachment || rt.rec.prepared || !op || op.attachment) return;
    let record;
    try {
      record = prepare(rt.rec, this.#o.signer, op.build(staged.state));
    } catch {
      return; // built again when its turn comes, and refused then if it still does not fit
    }
    rt.queue.shift();
    this.#commit(rt, record);
    rt.preparedOp = op;
  }

  /** A prepared proposal that will not go out: its request waits at the head of the queue. */
  #unprepare(rt: Runtime): void {
    const op = rt.preparedOp;
    rt.preparedOp = null;
    if (op) rt.queue.unshift(op);
  }

  #settle(rt: Runtime, state: SignedState, direction: 'in' | 'out'): void {
    rt.active = Date.now();
    if (direction === 'out') {
      const op = rt.inflight;
      rt.inflight = null;
      if (op) this.#resolve(op, state);
      if (rt.yielding) this.#pauseFor(rt, 2 * this.#timing.retransmitMs);
      rt.yielding = false;
      rt.contended = null;
    } else if (rt.paused) {
      this.#resume(rt);
    }
    const channel = rt.rec;
    queueMicrotask(() => {
      this.emit('updated', { channel, state, direction });
      if (state.state.isFinal) this.emit('final', channel);
    });
    if (state.state.isFinal && channel.virtual && this.isFunded(channel.id)) this.#settleParent(rt);
  }

  /** A parent update that added or removed a virtual channel's lock makes it funded or settled. */
  #announceLockChanges(before: ChannelRecord, after: ChannelRecord): void {
    const was = new Set(before.current.state.outcome.locked.map((l) => l.id));
    const now = new Set(after.current.state.outcome.locked.map((l) => l.id));
    for (const id of now) {
      const vrt = this.#channels.get(id);
      if (was.has(id) || !vrt) continue;
      const vc = vrt.rec;
      this.#notify(() => this.emit('funded', vc));
      const waiting = vrt.awaitingFunds;
      vrt.awaitingFunds = null;
      if (waiting) this.#notify(() => void this.#onUpdate(vrt, waiting).catch((err) => this.#refused(vc.peer, err)));
    }
    for (const id of was) {
      const vrt = this.#channels.get(id);
      if (now.has(id) || !vrt) continue;
      const vc = vrt.rec;
      this.#notify(() => this.emit('settled', vc));
      // Its funds are back, per a final state both signed: nothing is left to do with it.
      if (vc.phase === 'final') this.#afterCommit(() => this.#retire(vrt));
    }
  }

  /** Resolves with the channel once `done()` holds, checked now and at each `event`. */
  #when(id: Bytes32, event: 'funded' | 'settled', done: () => boolean): Promise<ChannelRecord> {
    return new Promise((resolve, reject) => {
      if (done()) return resolve(this.channel(id));
      const timer = setTimeout(() => {
        this.off(event, check);
        reject(new ProtocolTimeoutError(`virtual channel ${id} not ${event} in time`));
      }, this.#timing.requestTimeoutMs * 2);
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.off(event, check);
        resolve(this.channel(id));
      };
      this.on(event, check);
    });
  }

  /** Asks the gateway, through this side's ledger channel, to lock the virtual channel's funds. */
  #fund(vc: Runtime): void {
    const { parent } = vc.rec.virtual!;
    const p = vc.rec.params;
    const fund = {
      peer: vc.rec.peer,
      index: vc.rec.idx,
      challengeDuration: p.challengeDuration,
      nonce: p.nonce,
      kind: p.kind,
      balances: vc.rec.current.state.outcome.balances,
      sig: p.kind === ChannelKind.Stream ? null : vc.rec.current.sigs[vc.rec.idx]!,
    };
    const funding = this.update(parent, () => lockBody(this.#runtime(parent).rec, vc.rec, this.#o.virtualFee), { fund });
    this.#funding.set(vc.rec.id, funding);
    funding
      .catch((err) => {
        this.#log.warn({ channel: vc.rec.id, err: String(err) }, 'funding the virtual channel failed');
        // A peer's proposal waiting for these funds will not get them: refuse it now.
        const waiting = vc.awaitingFunds;
        vc.awaitingFunds = null;
        if (waiting) this.#refuse(vc, waiting.version, RejectReason.Policy);
      })
      .finally(() => {
        this.#funding.delete(vc.rec.id);
        this.#dropUnfunded(vc.rec.id);
      });
  }

  /**
   * A virtual channel whose funding failed, with no lock in its parent and none asked for
   * any more, will never be funded: it is retired, so that it holds no slot and a restart
   * does not fund what the caller was told had failed.
   */
  #dropUnfunded(vcId: Bytes32): void {
    const vc = this.#channels.get(vcId);
    if (vc && this.#unfundable(vc)) this.#afterCommit(() => this.#retire(vc));
  }

  /** An open virtual channel that nothing funds, nor will: no lock in the parent, none being asked for. */
  #unfundable(vc: Runtime): boolean {
    const parent = vc.rec.virtual && this.#channels.get(vc.rec.virtual.parent);
    return !!parent && vc.rec.phase === 'open' && !this.isFunded(vc.rec.id) && !this.#funding.has(vc.rec.id) && !this.#askedInFlight(parent, vc.rec.id);
  }

  /**
   * Asks the gateway to release a final virtual channel's funds into this side's ledger
   * channel, and asks again, backing off, until they are back: the gateway refuses when
   * the other device's request does not come within its hold time, and both must ask.
   */
  #settleParent(vc: Runtime, backoff = this.#timing.retransmitMs): void {
    const id = vc.rec.id;
    if (this.#settling.has(id) || this.#stopped) return;
    const parent = vc.rec.virtual!.parent;
    const cur = vc.rec.current;
    const settle = { id: fromHex(id), version: cur.state.version, balances: cur.state.outcome.balances, sigs: cur.sigs as readonly [Uint8Array, Uint8Array] };
    this.#settling.add(id);
    this.update(parent, () => unlockBody(this.#runtime(parent).rec, this.#runtime(id).rec), { settle })
      .catch((err) => {
        this.#log.warn({ channel: id, err: String(err), retryInMs: backoff }, 'settling the virtual channel failed');
        const retry = setTimeout(() => {
          if (vc.rec.phase === 'final' && this.isFunded(id)) this.#settleParent(vc, this.#doubled(backoff));
        }, (0.5 + Math.random()) * backoff);
        retry.unref();
      })
      .finally(() => this.#settling.delete(id));
  }

  /** After a restart: ask again for what each virtual channel was waiting on, unless that is still in flight. */
  #resumeVirtual(rt: Runtime): void {
    const info = rt.rec.virtual;
    const parent = info && this.#channels.get(info.parent);
    if (!parent || this.#askedInFlight(parent, rt.rec.id)) return;
    if (rt.rec.phase === 'open' && !this.isFunded(rt.rec.id)) this.#fund(rt);
    if (rt.rec.phase === 'final' && this.isFunded(rt.rec.id)) this.#settleParent(rt);
    // A crash came between settling and retiring it.
    else if (rt.rec.phase === 'final' && !rt.rec.staged) this.#retire(rt);
  }

  /**
   * Settles every funded virtual channel idle for idleMs, so that a peer that stops using
   * one does not keep its funds, or this side's slot, for ever. Asked again at each sweep
   * while the peer does not answer. (A peer gone for good is the watcher's to settle on-chain.)
   * One whose funding failed, with nothing locked or being locked, is retired.
   */
  #settleIdle(): void {
    const now = Date.now();
    for (const rt of this.#channels.all()) {
      const rec = rt.rec;
      if (!rec.virtual || rec.phase !== 'open') continue;
      if (!this.isFunded(rec.id)) {
        if (this.#abandoned(rt) && this.#unfundable(rt)) this.#retire(rt);
        continue;
      }
      if (now - rt.active < this.#o.virtualLimits.idleMs) continue;
      // Only the payer proposes in a stream: the payee asks it to.
      const stream = rec.params.kind === ChannelKind.Stream;
      if (stream ? rec.idx !== 1 : rt.inflight || rt.queue.length > 0) continue;
      this.#log.info({ channel: rec.id, peer: rec.peer, idleMs: now - rt.active }, 'settling an idle virtual channel');
      if (stream) this.#send(rec.peer, closeRequest(rec, this.#o.signer));
      else this.finalize(rec.id).catch((err) => this.#log.debug({ channel: rec.id, err: String(err) }, 'closing an idle virtual channel failed'));
    }
  }

  /** Whether the parent's proposal in flight is the request to fund or release `vcId`. */
  #askedInFlight(parent: Runtime, vcId: Bytes32): boolean {
    const staged = parent.rec.staged;
    if (!staged?.attachment) return false;
    if ('settle' in staged.attachment) return toHex(staged.attachment.settle.id) === vcId;
    const locks = (s: State): boolean => s.outcome.locked.some((l) => l.id === vcId);
    return locks(staged.state) && !locks(parent.rec.current.state);
  }

  /** A channel became open on this side: announce it, and fund it if it is virtual. */
  #opened(rt: Runtime): void {
    const channel = rt.rec;
    this.#log.info({ channel: channel.id, kind: channel.params.kind }, 'channel open');
    this.#notify(() => this.emit('opened', channel));
    if (channel.virtual) this.#fund(rt);
  }

  /**
   * Requests that `state` already carries (see Op.carriedBy) are done, wherever they wait:
   * queued, prepared or in flight. A proposal still out for one of them stays out with no
   * request, like one whose request timed out.
   */
  #landed(rt: Runtime, state: SignedState): void {
    const carries = (op: Op | null): op is Op => !!op && op.carriedBy.some((s) => sameState(s, state.state));
    const done = [rt.inflight, rt.preparedOp, ...rt.queue].filter(carries);
    if (done.length === 0) return;
    if (carries(rt.inflight)) rt.inflight = null;
    if (carries(rt.preparedOp)) rt.preparedOp = null;
    rt.queue = rt.queue.filter((op) => !carries(op));
    for (const op of done) this.#resolve(op, state);
  }

  #resolve(op: Op, state: SignedState): void {
    clearTimeout(op.deadline);
    // If this step's write fails, the request fails instead (see #flush).
    this.#outbox.waitOn(op);
    this.#notify(() => op.resolve(state));
  }

  #fail(op: Op, err: unknown): void {
    clearTimeout(op.deadline);
    op.reject(err);
  }

  #expire(rt: Runtime, op: Op): void {
    if (rt.inflight === op) rt.inflight = null;
    if (rt.preparedOp === op) {
      rt.preparedOp = null;
      // Once sent, it stays like a staged one: the peer may still sign it.
      if (!rt.rec.prepared?.sent) this.#commit(rt, { ...rt.rec, prepared: null }, false);
    }
    rt.queue = rt.queue.filter((o) => o !== op);
    // A staged proposal stays: the peer may still sign it, so it is retransmitted until settled.
    op.reject(new ProtocolTimeoutError(`no answer from ${rt.rec.peer} within ${this.#timing.requestTimeoutMs} ms`));
    this.#pump(rt);
  }

  /**
   * A request that lost a tie-break goes back to the head of the queue, and this side
   * holds its proposals for a moment so that the winner's goes through first. It is
   * retried until its deadline: the winner makes progress every time.
   */
  #retryLater(rt: Runtime, op: Op): void {
    rt.queue.unshift(op);
    this.#pauseFor(rt, (0.5 + Math.random()) * this.#timing.retransmitMs);
  }

  /** No proposals from this side for `ms`, or until the peer's next update lands. */
  #pauseFor(rt: Runtime, ms: number): void {
    if (rt.paused) clearTimeout(rt.paused);
    rt.paused = setTimeout(() => this.#resume(rt), ms);
    rt.paused.unref();
  }

  #resume(rt: Runtime): void {
    if (rt.paused) clearTimeout(rt.paused);
    rt.paused = null;
    this.#pump(rt);
  }

  #armRetransmit(rt: Runtime): void {
    if (rt.retransmit || this.#stopped) return;
    rt.retransmit = setTimeout(() => {
      rt.retransmit = null;
      if (!rt.rec.staged && rt.rec.phase !== 'opening') {
        rt.backoff = this.#timing.retransmitMs;
        return;
      }
      rt.backoff = this.#doubled(rt.backoff);
      if (rt.rec.phase === 'opening') {
        // The proposer gave up on this channel, or never meant it: it expires. Nothing of
        // this side's is at stake in it, for nothing is funded before an open completes.
        if (this.#abandoned(rt)) return this.#retire(rt);
        this.#send(rt.rec.peer, openAcceptOf(rt.rec));
      } else {
        const sync = makeSync(rt.rec);
        if (sync) this.#send(rt.rec.peer, sync);
        const staged = rt.rec.staged;
        // The peer needs the evidence with the proposal; a Sync carries only the proposal.
        if (staged?.attachment) this.#send(rt.rec.peer, withAttachment(stagedMessage(rt.rec), staged.attachment));
      }
      this.#armRetransmit(rt);
    }, rt.backoff);
    rt.retransmit.unref();
  }

  /** The next wait of every retry here: twice the last, at most maxRetransmitMs. */
  #doubled(ms: number): number {
    return Math.min(ms * 2, this.#timing.maxRetransmitMs);
  }

  #clearRetransmit(rt: Runtime): void {
    if (rt.retransmit) clearTimeout(rt.retransmit);
    rt.retransmit = null;
    rt.backoff = this.#timing.retransmitMs;
  }

  // ---- opening ----

  #resumeOpen(pending: PendingOpen): Promise<ChannelRecord> {
    const key = toHex(pending.message.share);
    return new Promise<ChannelRecord>((resolve, reject) => {
      const w: OpenWaiter = { pending, resolve, reject, timer: null, backoff: this.#timing.retransmitMs };
      this.#opens.set(key, w);
      const deadline = Date.now() + this.#timing.requestTimeoutMs;
      const attempt = (): void => {
        if (!this.#opens.has(key) || this.#stopped) return;
        if (Date.now() > deadline) {
          this.#opens.delete(key);
          if (this.#persist(() => this.#o.store.deletePendingOpen(key))) return;
          return reject(new ProtocolTimeoutError(`no answer to the channel proposal from ${pending.context.participants[1]}`));
        }
        this.#send(pending.context.participants[1], pending.message);
        w.timer = setTimeout(attempt, w.backoff);
        w.timer.unref();
        w.backoff = this.#doubled(w.backoff);
      };
      attempt();
    });
  }

  async #onOpenPropose(from: Address, m: OpenPropose): Promise<void> {
    const shareA = toHex(m.share);
    const known = this.#o.store.acceptedOpen(shareA);
    if (known) {
      // A repeat (our answer was lost, or a replay): the same answer again, nothing new.
      const rt = this.#channels.get(known.channelId);
      if (rt) this.#send(from, openAcceptOf(rt.rec));
      return;
    }
    const reply = (reason: RejectReason): void => this.#send(from, openReject(this.#o.signer, m.share, reason));
    let peerKey: Uint8Array;
    try {
      peerKey = verifyProposal(this.address, m, from, this.#o.chain);
    } catch (err) {
      // The reason, a bad signature included: a proposal signed for another chain looks forged.
      if (err instanceof ProtocolError) reply(reasonOf(err));
      throw err;
    }
    if (!(await this.#policy.acceptOpen(m, from))) return reply(RejectReason.Policy);
    if (this.#o.store.acceptedOpen(shareA)) return; // answered while the policy ran
    let virtual: ChannelRecord['virtual'];
    if (m.kind !== ChannelKind.Ledger) {
      // A virtual channel is funded by our ledger channel with the gateway it names.
      const parent = m.gateway && this.#ledgerWith(m.gateway);
      if (!parent || this.#fundingLoad(parent) >= MAX_LOCKED) return reply(RejectReason.InvalidTerms);
      if (!this.#withinVirtualLimits(from, m)) return reply(RejectReason.Policy);
      virtual = { gateway: m.gateway!, parent: parent.rec.id };
    }
    const accepted = acceptOpen(this.#o.signer, m, from, this.#o.chain, peerKey);
    const record: ChannelRecord = virtual ? { ...accepted.record, virtual } : accepted.record;
    const accept = accepted.reply;
    if (this.#channels.byAlias(aliasOf(record.id))) return reply(RejectReason.InvalidTerms);
    const failed = this.#persist(() =>
      this.#o.store.atomically(() => {
        this.#o.store.saveChannel(record);
        this.#o.store.saveAcceptedOpen({ shareA, channelId: record.id });
      }),
    );
    if (failed) return;
    const rt = this.#track(record);
    this.#send(from, accept);
    this.#armRetransmit(rt);
    this.#log.info({ channel: record.id, peer: from }, 'channel proposal accepted');
  }

  #onOpenAccept(from: Address, m: OpenAccept): void {
    const key = toHex(m.shareA);
    const w = this.#opens.get(key);
    if (!w) {
      // Our countersignature was lost: send it again.
      const rt = this.#channels.withPeer(from).find((r) => r.rec.idx === 0 && Buffer.from(r.rec.shares.a).equals(m.shareA));
      if (rt) this.#send(from, { type: MessageType.UpdateAccept, alias: aliasOf(rt.rec.id), version: 0n, sig: rt.rec.current.sigs[0]! });
      return;
    }
    if (w.pending.context.participants[1] !== from) throw new WrongPeerError('acceptance from another peer');
    const completed = completeOpen(this.#o.signer, w.pending, m);
    const gateway = w.pending.message.gateway;
    const record: ChannelRecord = gateway ? { ...completed.record, virtual: { gateway, parent: this.#parentFor(gateway).rec.id } } : completed.record;
    const reply = completed.reply;
    if (this.#channels.byAlias(aliasOf(record.id))) throw new AliasCollisionError('channel alias collides with a live channel');
    const failed = this.#persist(() =>
      this.#o.store.atomically(() => {
        this.#o.store.saveChannel(record);
        this.#o.store.deletePendingOpen(key);
      }),
    );
    if (failed) return;
    if (w.timer) clearTimeout(w.timer);
    this.#opens.delete(key);
    const rt = this.#track(record);
    this.#send(from, reply);
    this.#notify(() => w.resolve(record));
    this.#opened(rt);
  }

  #onOpenReject(from: Address, m: OpenReject): void {
    const key = toHex(m.shareA);
    const w = this.#opens.get(key);
    const peer = w?.pending.context.participants[1];
    if (!w || peer !== from || !openRejectedBy(m, peer)) return;
    if (w.timer) clearTimeout(w.timer);
    this.#opens.delete(key);
    if (this.#persist(() => this.#o.store.deletePendingOpen(key))) return;
    w.reject(new OpenRejectedError(Object.entries(RejectReason).find(([, v]) => v === m.reason)?.[0] ?? String(m.reason)));
  }

  // ---- incoming channel messages ----

  #receive(from: Address, frame: Uint8Array): void {
    // A stopped agent acts on nothing: its memory may be ahead of its store.
    if (this.#stopped) return;
    let msg: Message;
    try {
      msg = decodeMessage(frame, this.#o.maxMessageBytes);
    } catch (err) {
      return this.#refused(from, err);
    }
    this.#dispatch(from, msg).catch((err) => this.#refused(from, err));
  }

  async #dispatch(from: Address, msg: Message): Promise<void> {
    switch (msg.type) {
      case MessageType.OpenPropose:
        return this.#onOpenPropose(from, msg);
      case MessageType.OpenAccept:
        return this.#onOpenAccept(from, msg);
      case MessageType.OpenReject:
        return this.#onOpenReject(from, msg);
    }
    if (msg.type === MessageType.Sync && !this.#channels.byAlias(msg.alias)) return this.#onRetiredSync(from, msg);
    const rt = this.#fromPeer(from, msg.alias);
    // Messages of a channel are handled in the order they came, an acceptance checked late included.
    while (rt.verifying) await rt.verifying;
    switch (msg.type) {
      case MessageType.Update:
        return this.#onUpdate(rt, msg);
      case MessageType.UpdateAccept:
        return this.#onAccept(rt, msg);
      case MessageType.UpdateReject:
        return this.#onReject(rt, msg);
      case MessageType.Sync:
        return this.#onSync(rt, msg);
      case MessageType.FundRequest:
        return this.#onUpdate(rt, { ...msg, type: MessageType.Update }, { fund: msg.vc });
      case MessageType.SettleRequest:
        return this.#onUpdate(rt, { ...msg, type: MessageType.Update }, { settle: msg.vc });
      case MessageType.Voucher:
        return this.#onVoucher(rt, msg);
      case MessageType.VoucherAck:
        return this.#onVoucherAck(rt, msg);
      case MessageType.CloseRequest:
        // Once: repeats (the payee asks at each sweep, or a flood of replays) find the close under way.
        if (rt.rec.params.kind !== ChannelKind.Stream || rt.rec.idx !== 0 || rt.rec.phase !== 'open' || rt.inflight || rt.queue.length > 0) return;
        // A request older than the last voucher (a replay) is spent: the stream went on since.
        if (msg.cumulative >= (rt.rec.voucher?.cumulative ?? 0n) && signedByPeer(rt.rec, msg)) await this.settleVirtual(rt.rec.id);
        return;
    }
  }

  /**
   * A peer resynchronising a channel this side retired (it missed the last acceptance):
   * the final state both signed, from the archive. Nothing else of a retired channel is
   * answered, and nothing changes here.
   */
  #onRetiredSync(from: Address, msg: Sync): void {
    const rec = this.#o.store.retiredByAlias(aliasKey(msg.alias));
    if (!rec || rec.peer !== from) throw new UnknownChannelError(`no channel with alias ${aliasKey(msg.alias)}`);
    if (rec.phase === 'opening') {
      // The proposer completed the open after this side let it expire (its countersignature
      // was lost meanwhile): with both signatures on version 0, the channel is live after all.
      const result = receiveSync(rec, this.#o.signer, msg);
      if (result.record?.phase !== 'open') return;
      const rt = this.#track(result.record);
      this.#commit(rt, result.record);
      this.#opened(rt);
      return;
    }
    const sync = rec.phase === 'final' ? makeSync(rec) : null;
    if (sync) this.#send(from, sync);
  }

  #onVoucher(rt: Runtime, msg: Voucher): void {
    const record = receiveVoucher(rt.rec, msg, this.#o.signer.publicKey);
    if (rt.rec.idx === 0) {
      // The payer takes back its own voucher, which the payee shows on a resync (see #onSync):
      // losing it again only makes this side pay less, so no fsync.
      if (record) this.#commit(rt, record, false);
      return;
    }
    this.#ackVouchers(rt);
    if (!record) return;
    const cumulative = record.voucher!.cumulative;
    rt.active = Date.now();
    // Group commit: a voucher is written (and fsynced) once the amount since the last
    // written one reaches voucherDurableEvery; a crash loses less than that, never more.
    if (cumulative - rt.durableVoucher >= this.#o.voucherDurableEvery) {
      this.#commit(rt, record);
      rt.durableVoucher = cumulative;
    } else {
      this.#keep(rt, record);
    }
    const channel = rt.rec;
    this.#notify(() => this.emit('voucher', { channel, cumulative }));
  }

  /**
   * Stream payee: one acknowledgement per turn of the event loop, of the highest voucher
   * held by then, however many arrived (a repeat too: the payer may have lost one).
   */
  #ackVouchers(rt: Runtime): void {
    if (rt.ackDue) return;
    rt.ackDue = true;
    setImmediate(() => {
      rt.ackDue = false;
      const cumulative = rt.rec.voucher?.cumulative;
      if (cumulative !== undefined) this.#send(rt.rec.peer, { type: MessageType.VoucherAck, alias: aliasOf(rt.rec.id), cumulative });
    });
  }

  /** Stream payer: the payee received vouchers up to `cumulative`. */
  #onVoucherAck(rt: Runtime, msg: VoucherAck): void {
    if (rt.rec.params.kind !== ChannelKind.Stream || rt.rec.idx !== 0) throw new WrongPeerError('voucher acknowledgements go to the payer of a stream channel');
    if (msg.cumulative > (rt.rec.voucher?.cumulative ?? 0n)) throw new InvalidAllocationError('acknowledges more than was paid');
    if (msg.cumulative <= rt.voucherAcked) return;
    rt.voucherAcked = msg.cumulative;
    const unacked = this.#unacked(rt);
    rt.windowWaiters = rt.windowWaiters.filter((w) => {
      if (unacked > w.maxUnacked) return true;
      w.resolve();
      return false;
    });
    if (rt.windowWaiters.length === 0 && rt.windowRetry) {
      clearTimeout(rt.windowRetry);
      rt.windowRetry = null;
    }
  }

  /** While payers wait for acknowledgements: the latest voucher again, backing off. */
  #armWindowRetry(rt: Runtime, backoff: number): void {
    if (rt.windowRetry || this.#stopped) return;
    rt.windowRetry = setTimeout(() => {
      rt.windowRetry = null;
      const voucher = voucherMessage(rt.rec);
      if (rt.windowWaiters.length === 0 || !voucher) return;
      this.#send(rt.rec.peer, voucher);
      this.#armWindowRetry(rt, this.#doubled(backoff));
    }, backoff);
    rt.windowRetry.unref();
  }

  #fromPeer(from: Address, alias: Uint8Array): Runtime {
    const rt = this.#channels.byAlias(alias);
    if (!rt) throw new UnknownChannelError(`no channel with alias ${aliasKey(alias)}`);
    if (rt.rec.peer !== from) throw new WrongPeerError(`message for channel ${rt.rec.id} from ${from}`);
    return rt;
  }

  async #onUpdate(rt: Runtime, msg: Update, attachment?: Attachment, attempts = 3): Promise<void> {
    const before = rt.rec;
    if (rt.held && rt.held.msg.version === msg.version) {
      // A repeat of a held proposal; keep the first evidence unless this one brings some.
      if (attachment && !rt.held.attachment) {
        rt.held = { msg, attachment };
        this.#emitHeld(rt, msg, attachment);
      }
      return;
    }
    let proposed: State | null = null;
    try {
      // Verified before any policy sees it: a forged proposal is never held or matched.
      if (!before.staged) proposed = verifiedProposal(before, msg);
    } catch {
      // receiveUpdate below answers: a repeat of the accepted state, or a typed refusal.
    }
    if (proposed) {
      const allowed = kindRule(before, proposed);
      if (allowed && before.virtual && !this.isFunded(before.id)) {
        rt.awaitingFunds = msg;
        this.#log.debug({ channel: before.id, version: msg.version }, 'proposal waits until this side has locked the funds');
        return;
      }
      const decision = allowed && (await this.#policy.acceptUpdate({ channel: before, current: before.current.state, proposed, attachment }));
      if (rt.rec !== before) return attempts > 0 ? this.#onUpdate(rt, msg, attachment, attempts - 1) : undefined;
      // A copy of this proposal may have been held while the policy ran: keep that one.
      if (rt.held && rt.held.msg.version === msg.version) return this.#onUpdate(rt, msg, attachment, 0);
      if (decision === 'hold') {
        rt.held = { msg, attachment, verified: { on: before, state: proposed } };
        this.#emitHeld(rt, msg, attachment);
        return;
      }
      if (!decision) {
        this.#refuse(rt, msg.version, RejectReason.Policy);
        return;
      }
    }
    this.#answer(rt, msg, proposed ? { on: before, state: proposed } : undefined);
  }

  /** The peer proposed while this side's proposal was out: a tie. Its version counts once its signature does. */
  #noteTie(rt: Runtime, msg: Update): void {
    let peerSigned = rt.contended?.peerSigned ?? -1n;
    if (msg.version > peerSigned) {
      try {
        verifiedProposal({ ...rt.rec, staged: null, highestSigned: rt.rec.current.state.version }, msg);
        peerSigned = msg.version;
      } catch {
        // not the peer's, or not a version it could propose: no hint
      }
    }
    rt.contended = { peerSigned };
  }

  /** Refuses the peer's verified proposal, never to sign that version after (see refuse). */
  #refuse(rt: Runtime, version: bigint, reason: RejectReason): void {
    const { record, reply } = refuse(rt.rec, this.#o.signer, version, reason);
    this.#commit(rt, record);
    this.#send(rt.rec.peer, reply);
  }

  #emitHeld(rt: Runtime, msg: Update, attachment?: Attachment): void {
    const channel = rt.rec;
    const proposed = stateFromBody(channel, msg);
    this.#notify(() => this.emit('held', { channel, current: channel.current.state, proposed, attachment }));
  }

  /** Signs and persists the peer's proposal (or answers a repeat, or refuses it with a typed reason). */
  #answer(rt: Runtime, msg: Update, verified?: Verified): void {
    const result = receiveUpdate(rt.rec, this.#o.signer, msg, verified?.on === rt.rec ? verified.state : undefined);
    if (result.kind === 'accepted') {
      this.#commit(rt, result.record);
      this.#send(rt.rec.peer, result.reply);
      this.#settle(rt, result.state, 'in');
    } else {
      this.#send(rt.rec.peer, result.reply);
      if (result.kind === 'rejected') this.#refused(rt.rec.peer, result.error);
      if (result.kind === 'rejected' && result.error instanceof UpdateConflictError) this.#noteTie(rt, msg);
    }
  }

  async #onAccept(rt: Runtime, msg: UpdateAccept): Promise<void> {
    const released = rt.earlyRelease ? releasePrepared(rt.rec, msg) : null;
    if (released) {
      // The prepared proposal leaves first; the acceptance is verified on the next turn,
      // once the transport has written it (mqtt.js writes on the next tick), while the
      // peer already works on it. Meanwhile this channel's messages wait (see #dispatch).
      // It was stored when it was signed (a failed write would have stopped the agent), so
      // it leaves without another write; the mark `sent` is stored with the next one.
      this.#keep(rt, released.record);
      this.#send(rt.rec.peer, released.message);
      // Built on the staged proposal, it carries that request's change too.
      for (const op of [rt.inflight, rt.preparedOp]) op?.carriedBy.push(released.record.prepared!.state);
      rt.verifying = new Promise<void>((next) => setImmediate(next));
      await rt.verifying;
      rt.verifying = null;
      if (this.#stopped) return;
    }
    this.#acceptOwn(rt, msg);
  }

  #acceptOwn(rt: Runtime, msg: UpdateAccept): void {
    const wasOpening = rt.rec.phase === 'opening';
    const nextWasSent = !!rt.rec.prepared?.sent;
    let result;
    try {
      result = receiveAccept(rt.rec, msg);
    } catch (err) {
      // A peer that sent one bad acceptance gets no more head start on this channel; the
      // proposal that left stays out, and is stored as sent.
      if (nextWasSent) {
        rt.earlyRelease = false;
        this.#commit(rt, rt.rec, false);
      }
      throw err;
    }
    if (!result) return;
    // A promoted prepared proposal was stored durably when it was signed.
    this.#commit(rt, result.record, wasOpening || reliesOn(rt.rec, result.state.state));
    this.#clearRetransmit(rt);
    if (wasOpening) this.#opened(rt);
    else this.#completeOwn(rt, result.state, result.completed);
    if (rt.rec.staged && !nextWasSent) {
      this.#send(rt.rec.peer, stagedMessage(rt.rec));
      rt.inflight?.carriedBy.push(rt.rec.staged.state);
    }
    if (rt.rec.staged) this.#armRetransmit(rt);
    this.#pump(rt);
  }

  /**
   * The peer signed this side's proposal: its request is done, and so is the prepared
   * one's when that was what the peer signed ('both'). Otherwise the prepared proposal,
   * now staged, carries its request.
   */
  #completeOwn(rt: Runtime, state: SignedState, completed: AcceptResult['completed']): void {
    const prepared = rt.preparedOp;
    rt.preparedOp = null;
    this.#settle(rt, state, 'out');
    if (completed === 'both') {
      if (prepared) this.#resolve(prepared, state);
    } else if (rt.rec.staged) {
      rt.inflight = prepared;
    } else if (prepared) {
      rt.queue.unshift(prepared);
    }
  }

  #onReject(rt: Runtime, msg: UpdateReject): void {
    const result = receiveReject(rt.rec, this.#o.signer, msg, rt.contended?.peerSigned);
    if (!result) return;
    this.#unprepare(rt);
    if (result.kind === 'retry') {
      rt.yielding = true;
      this.#commit(rt, result.proposal.record);
      this.#send(rt.rec.peer, result.proposal.message);
      rt.inflight?.carriedBy.push(result.proposal.state);
      return;
    }
    const refused = rt.rec.staged;
    this.#commit(rt, result.record);
    this.#clearRetransmit(rt);
    const op = rt.inflight;
    rt.inflight = null;
    if (op && result.error instanceof UpdateConflictError) this.#retryLater(rt, op);
    else if (op) this.#fail(op, result.error);
    // A funding request refused after its caller gave up (it timed out): nothing else will fund it.
    if (refused?.attachment && 'fund' in refused.attachment) {
      const [vcId] = lockDiff(rt.rec.current.state, refused.state).added;
      if (vcId) this.#dropUnfunded(vcId);
    }
    this.#pump(rt);
  }

  async #onSync(rt: Runtime, msg: Sync): Promise<void> {
    const result = receiveSync(rt.rec, this.#o.signer, msg);
    if (result.record) {
      const wasOpening = rt.rec.phase === 'opening';
      this.#commit(rt, result.record);
      if (wasOpening) this.#opened(rt);
    }
    if (result.adopted) {
      const completed = result.staged === 'completed' || result.staged === 'bothCompleted';
      if (completed) {
        this.#completeOwn(rt, result.adopted, result.staged === 'bothCompleted' ? 'both' : 'staged');
      } else {
        // Requests whose proposals are gone go back to the queue, in their order.
        if (!rt.rec.prepared) this.#unprepare(rt);
        const op = rt.inflight;
        if (result.staged === 'superseded' && op) {
          rt.inflight = null;
          this.#retryLater(rt, op);
        }
      }
      // Before anything is built on the adopted state: what it already carries is done.
      this.#landed(rt, result.adopted);
      if (!completed && result.adopted.state.version > 0n) this.#settle(rt, result.adopted, 'in');
      if (!rt.rec.staged) this.#clearRetransmit(rt);
    }
    for (const reply of result.replies) this.#send(rt.rec.peer, reply);
    // A stream's resync carries each side's highest voucher: the payer's, for a payee whose
    // store lost the last ones; the payee's, for a payer whose record trails what it signed.
    const voucher = rt.rec.params.kind === ChannelKind.Stream && rt.rec.phase === 'open' ? voucherMessage(rt.rec) : null;
    if (voucher) this.#send(rt.rec.peer, voucher);
    if (result.peerProposal) await this.#onUpdate(rt, result.peerProposal);
    this.#pump(rt);
  }

  // ---- plumbing ----

  #track(loaded: ChannelRecord): Runtime {
    // A proposal prepared before a restart has no request any more: unsent, it is dropped
    // (its version stays signed); sent, it stays out, for the peer may still sign it.
    const rec = loaded.prepared && !loaded.prepared.sent ? { ...loaded, prepared: null } : loaded;
    const rt: Runtime = {
      rec,
      queue: [],
      inflight: null,
      retransmit: null,
      backoff: this.#timing.retransmitMs,
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
      earlyRelease: true,
      // After a restart, what was paid counts as received: the payee acknowledges anew as vouchers come.
      voucherAcked: rec.voucher?.cumulative ?? 0n,
      windowWaiters: [],
      windowRetry: null,
      ackDue: false,
    };
    this.#channels.add(rt);
    return rt;
  }

  /** Archives a channel that is done and forgets it (see retire). */
  #retire(rt: Runtime): void {
    const rec = rt.rec;
    if (this.#channels.get(rec.id) !== rt || this.#stopped) return;
    if (this.#persist(() => this.#o.store.retireChannel(rec, aliasKey(aliasOf(rec.id))))) return;
    this.#windDown(rt, new ChannelClosedError(`channel ${rec.id} is closed`));
    this.#channels.remove(rt);
    this.#log.debug({ channel: rec.id, phase: rec.phase }, 'channel retired');
    this.#notify(() => this.emit('retired', rec));
  }

  /** Stops a channel's timers and fails every request and waiter on it with `reason`. */
  #windDown(rt: Runtime, reason: unknown): void {
    this.#clearRetransmit(rt);
    if (rt.paused) clearTimeout(rt.paused);
    if (rt.windowRetry) clearTimeout(rt.windowRetry);
    for (const op of [...rt.queue, ...(rt.inflight ? [rt.inflight] : []), ...(rt.preparedOp ? [rt.preparedOp] : [])]) this.#fail(op, reason);
    for (const w of rt.windowWaiters.splice(0)) w.reject(reason);
    rt.preparedOp = null;
    rt.queue = [];
    rt.inflight = null;
  }

  #runtime(id: Bytes32): Runtime {
    const rt = this.#channels.get(id);
    if (!rt) throw this.#o.store.loadChannel(id) ? new ChannelClosedError(`channel ${id} is closed`) : new UnknownChannelError(`no channel ${id}`);
    return rt;
  }

  /** Persists a record before anything that depends on it is sent or acted on. */
  #commit(rt: Runtime, rec: ChannelRecord, durable = true): void {
    // The batch first: what keeping the record sets off (events, retiring a settled
    // virtual channel) waits for this write.
    this.#outbox.open();
    this.#keep(rt, rec);
    this.#outbox.write(rec, durable);
  }

  /**
   * Nothing that depends on a failed write may leave this process, and memory is now
   * ahead of the store: the only safe state is the stored one. Stop; a restart resumes
   * from the store and resynchronises.
   */
  #storeFailed(err: unknown, waiting: readonly Waiting[] = []): StoreError {
    const failure = new StoreError('store write failed: agent stopped', { cause: err });
    this.#log.error({ err: String(err) }, 'store write failed; messages withheld, agent stopped');
    for (const op of waiting) op.reject(failure);
    this.#halt(failure);
    this.emit('failed', failure);
    return failure;
  }

  /** A store write outside the group commit (the open protocol): the failure, or null once it landed. */
  #persist(write: () => void): StoreError | null {
    try {
      write();
      return null;
    } catch (err) {
      return this.#storeFailed(err);
    }
  }

  /** Runs `fn` once everything committed so far is stored (at once when nothing waits). */
  #afterCommit(fn: () => void): void {
    this.#outbox.after(fn);
  }

  /** What user code sees (events, settled requests): after the commit, outside any step. */
  #notify(fn: () => void): void {
    this.#afterCommit(() => queueMicrotask(fn));
  }

  /** Makes `rec` the channel's state in memory. */
  #keep(rt: Runtime, rec: ChannelRecord): void {
    const before = rt.rec;
    rt.rec = rec;
    if (before.current !== rec.current) this.#announceLockChanges(before, rec);
  }

  /** Whether `from` may open one more virtual channel with this side, with the lock it proposes. */
  #withinVirtualLimits(from: Address, m: OpenPropose): boolean {
    const { perPeer, minLock } = this.#o.virtualLimits;
    const [x, y] = m.balances[0]!;
    if (x + y < minLock) return false;
    let live = 0;
    for (const rt of this.#channels.withPeer(from)) {
      const rec = rt.rec;
      if (rec.params.kind === ChannelKind.Ledger || rec.phase === 'final') continue;
      if (rec.phase === 'opening' && this.#abandoned(rt)) continue;
      live++;
    }
    return live < perPeer;
  }

  /**
   * Virtual channels a ledger channel funds or is about to: those it locks, those being
   * funded, those accepted and not open yet, and those this side is proposing. One whose
   * funding failed does not count: it will not be locked.
   */
  #fundingLoad(parent: Runtime): number {
    const counted = new Set(parent.rec.current.state.outcome.locked.map((l) => l.id));
    for (const rt of this.#channels.all()) {
      const id = rt.rec.id;
      if (rt.rec.virtual?.parent !== parent.rec.id) continue;
      if (this.#funding.has(id) || (rt.rec.phase === 'opening' && !this.#abandoned(rt))) counted.add(id);
    }
    let proposing = 0;
    for (const w of this.#opens.values()) if (w.pending.message.gateway === parent.rec.peer) proposing++;
    return counted.size + proposing;
  }

  /** An accepted open whose proposer has had time enough to complete it, and did not. */
  #abandoned(rt: Runtime): boolean {
    return Date.now() - rt.since > 4 * this.#timing.requestTimeoutMs;
  }

  /** This side's open ledger channel with `gateway`, which funds its virtual channels. */
  #parentFor(gateway: Address): Runtime {
    const rt = this.#ledgerWith(gateway);
    if (!rt) throw new UnknownChannelError(`no open ledger channel with gateway ${gateway.toLowerCase()}`);
    return rt;
  }

  #ledgerWith(peer: Address): Runtime | undefined {
    return this.#channels.withPeer(peer).find((r) => r.rec.params.kind === ChannelKind.Ledger && r.rec.phase === 'open');
  }

  #send(to: Address, msg: Message): void {
    if (this.#stopped) return;
    const frame = encodeMessage(msg);
    // Offline is normal (retransmission and resync cover it): not worth a warning.
    this.#afterCommit(() => void this.#o.transport.send(to, frame).catch((err) => this.#log.debug({ err: String(err), to }, 'send failed')));
  }

  #refused(peer: Address, err: unknown): void {
    if (err instanceof PicopayError) {
      this.#log.debug({ peer, code: err.code, reason: err.message }, 'peer message refused');
      this.emit('rejected', { peer, error: err });
    } else {
      this.#log.error({ peer, err }, 'unexpected error while handling a peer message');
    }
  }
}
