import type { EventEmitter } from 'node:events';
import { aliasKey, aliasOf, type ChannelRecord } from '../channel/record.ts';
import { ChannelClosedError, PicopayError, StoreError, UnknownChannelError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Address, Bytes32 } from '../model/types.ts';
import { encodeMessage } from '../wire/codec.ts';
import type { Message } from '../wire/messages.ts';
import { Dispatch } from './dispatch.ts';
import { Opening } from './opening.ts';
import { Outbox, type Waiting } from './outbox.ts';
import { Registry } from './registry.ts';
import { Requests } from './requests.ts';
import { Retransmission } from './retransmission.ts';
import { newRuntime, type Runtime } from './runtime.ts';
import { Streams } from './streams.ts';
import type { AgentEvents, Policy, Settings, Timing } from './types.ts';
import { Updates } from './updates.ts';
import { Virtuals } from './virtuals.ts';

/**
 * Each agent's modules, by agent: for the test support that plays a misbehaving party
 * (src/testing/mallory.ts). Nothing outside src/client and src/testing may import this
 * file (test/architecture.test.ts), so an application cannot reach past the Agent.
 */
export const cores = new WeakMap<EventEmitter<AgentEvents>, Core>();

/**
 * One agent's shared state and plumbing, and its protocol modules. Every module reaches
 * the others through here: `requests` (queue, pipelining, ties), `retransmission`,
 * `opening`, `updates` (the peer's proposals, acceptances, refusals, resyncs), `dispatch`
 * (inbound frames), `virtuals` (funding and settling), `streams` (vouchers).
 *
 * The one rule all of them follow: `commit` a record, then `send` or `notify`. Both wait
 * for the turn's group commit, so nothing leaves or is announced that is not stored.
 */
export class Core {
  readonly channels = new Registry<Runtime>();
  readonly outbox: Outbox;
  readonly requests: Requests;
  readonly retransmission: Retransmission;
  readonly opening: Opening;
  readonly updates: Updates;
  readonly dispatch: Dispatch;
  readonly virtuals: Virtuals;
  readonly streams: Streams;
  /** Why the agent stopped, once it has: what every later request fails with. */
  haltedBy: PicopayError | null = null;
  /** Called once the agent stopped: the facade's own timers. */
  onHalt: () => void = () => {};

  constructor(
    readonly address: Address,
    readonly o: Settings,
    readonly policy: Policy,
    readonly timing: Timing,
    readonly log: Logger,
    readonly events: EventEmitter<AgentEvents>,
  ) {
    this.outbox = new Outbox(o.store, (err, waiting) => this.storeFailed(err, waiting));
    this.requests = new Requests(this);
    this.retransmission = new Retransmission(this);
    this.opening = new Opening(this);
    this.updates = new Updates(this);
    this.dispatch = new Dispatch(this);
    this.virtuals = new Virtuals(this);
    this.streams = new Streams(this);
  }

  get stopped(): boolean {
    return this.haltedBy !== null;
  }

  /** Every request that starts work checks this first: a stopped agent takes none. */
  assertLive(): void {
    if (this.haltedBy) throw this.haltedBy;
  }

  /** Stops everything; every request still open fails with `reason`. */
  halt(reason: PicopayError): void {
    this.haltedBy = reason;
    this.onHalt();
    for (const rt of this.channels.all()) this.windDown(rt, reason);
    this.opening.failAll(reason);
  }

  runtime(id: Bytes32): Runtime {
    const rt = this.channels.get(id);
    if (!rt) throw this.o.store.loadChannel(id) ? new ChannelClosedError(`channel ${id} is closed`) : new UnknownChannelError(`no channel ${id}`);
    return rt;
  }

  /** A channel, live or retired. */
  channel(id: Bytes32): ChannelRecord {
    const rec = this.channels.get(id)?.rec ?? this.o.store.loadChannel(id);
    if (!rec) throw new UnknownChannelError(`no channel ${id}`);
    return rec;
  }

  track(rec: ChannelRecord): Runtime {
    const rt = newRuntime(rec, this.timing);
    this.channels.add(rt);
    return rt;
  }

  /** Archives a channel that is done and forgets it (see Agent.retire). */
  retire(rt: Runtime): void {
    const rec = rt.rec;
    if (this.channels.get(rec.id) !== rt || this.stopped) return;
    if (this.persist(() => this.o.store.retireChannel(rec, aliasKey(aliasOf(rec.id))))) return;
    this.windDown(rt, new ChannelClosedError(`channel ${rec.id} is closed`));
    this.channels.remove(rt);
    this.log.debug({ channel: rec.id, phase: rec.phase }, 'channel retired');
    this.notify(() => this.events.emit('retired', rec));
  }

  /** Stops a channel's timers and fails every request and waiter on it with `reason`. */
  windDown(rt: Runtime, reason: unknown): void {
    this.retransmission.clear(rt);
    if (rt.paused) clearTimeout(rt.paused);
    if (rt.windowRetry) clearTimeout(rt.windowRetry);
    for (const op of [...rt.queue, ...(rt.inflight ? [rt.inflight] : []), ...(rt.preparedOp ? [rt.preparedOp] : [])]) this.requests.fail(op, reason);
    for (const w of rt.windowWaiters.splice(0)) w.reject(reason);
    rt.preparedOp = null;
    rt.queue = [];
    rt.inflight = null;
  }

  /** Persists a record before anything that depends on it is sent or acted on. */
  commit(rt: Runtime, rec: ChannelRecord, durable = true): void {
    // The batch first: what keeping the record sets off (events, retiring a settled
    // virtual channel) waits for this write.
    this.outbox.open();
    this.keep(rt, rec);
    this.outbox.write(rec, durable);
  }

  /** Makes `rec` the channel's state in memory. */
  keep(rt: Runtime, rec: ChannelRecord): void {
    const before = rt.rec;
    rt.rec = rec;
    if (before.current !== rec.current) this.virtuals.announceLockChanges(before, rec);
  }

  /**
   * Nothing that depends on a failed write may leave this process, and memory is now
   * ahead of the store: the only safe state is the stored one. Stop; a restart resumes
   * from the store and resynchronises.
   */
  storeFailed(err: unknown, waiting: readonly Waiting[] = []): StoreError {
    const failure = new StoreError('store write failed: agent stopped', { cause: err });
    this.log.error({ err: String(err) }, 'store write failed; messages withheld, agent stopped');
    for (const op of waiting) op.reject(failure);
    this.halt(failure);
    this.events.emit('failed', failure);
    return failure;
  }

  /** A store write outside the group commit (the open protocol): the failure, or null once it landed. */
  persist(write: () => void): StoreError | null {
    try {
      write();
      return null;
    } catch (err) {
      return this.storeFailed(err);
    }
  }

  /** Runs `fn` once everything committed so far is stored (at once when nothing waits). */
  afterCommit(fn: () => void): void {
    this.outbox.after(fn);
  }

  /** What user code sees (events, settled requests): after the commit, outside any step. */
  notify(fn: () => void): void {
    this.afterCommit(() => queueMicrotask(fn));
  }

  send(to: Address, msg: Message): void {
    if (this.stopped) return;
    const frame = encodeMessage(msg);
    // Offline is normal (retransmission and resync cover it): not worth a warning.
    this.afterCommit(() => void this.o.transport.send(to, frame).catch((err) => this.log.debug({ err: String(err), to }, 'send failed')));
  }

  /** A peer message that was refused: logged and announced; the agent carries on. */
  refused(peer: Address, err: unknown): void {
    if (err instanceof PicopayError) {
      this.log.debug({ peer, code: err.code, reason: err.message }, 'peer message refused');
      this.events.emit('rejected', { peer, error: err });
    } else {
      this.log.error({ peer, err }, 'unexpected error while handling a peer message');
    }
  }

  /** The next wait of every retry here: twice the last, at most maxRetransmitMs. */
  doubled(ms: number): number {
    return Math.min(ms * 2, this.timing.maxRetransmitMs);
  }
}
