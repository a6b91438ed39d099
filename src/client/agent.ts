import { EventEmitter } from 'node:events';
import type { ChannelRecord } from '../channel/record.ts';
import { makeSync } from '../channel/sync.ts';
import { finalBody } from '../channel/update.ts';
import { ChannelClosedError, ProtocolTimeoutError } from '../errors.ts';
import { transfer } from '../model/allocation.ts';
import { type Address, type Bytes32, ChannelKind, type SignedState } from '../model/types.ts';
import { silentLogger } from '../log.ts';
import { RejectReason } from '../wire/messages.ts';
import { Core, cores } from './core.ts';
import { receiveOnly } from './rules.ts';
import type { Op } from './runtime.ts';
import { type AgentEvents, type AgentOptions, type OpenOptions, resolveOptions } from './types.ts';

export { DEFAULT_TIMING } from './types.ts';
export type { AgentEvents, AgentOptions, Decision, OpenOptions, Policy, Timing, UpdateContext, UpdatedEvent } from './types.ts';

/**
 * A party's channels and the protocol between it and its peers: what an application
 * calls. Every protocol step is synchronous: compute with the pure functions of
 * src/channel, persist in one transaction, then send. So steps never interleave, and
 * nothing is sent that is not stored. User code (policy, event listeners) runs only
 * between steps. The steps themselves live in the modules of src/client (see Core).
 */
export class Agent extends EventEmitter<AgentEvents> {
  readonly address: Address;
  readonly #c: Core;
  /** Looks for idle virtual channels now and then (see virtualLimits.idleMs). */
  #idleSweep: NodeJS.Timeout | null = null;

  constructor(options: AgentOptions) {
    super();
    this.address = options.signer.address;
    const { settings, timing } = resolveOptions(options);
    const policy = { acceptOpen: () => true, acceptUpdate: receiveOnly, ...options.policy };
    const log = (options.logger ?? silentLogger).child({ agent: this.address });
    this.#c = new Core(this.address, settings, policy, timing, log, this);
    cores.set(this, this.#c);
    this.#c.onHalt = () => {
      if (this.#idleSweep) clearInterval(this.#idleSweep);
    };
  }

  /** Loads every channel from the store, listens, and resynchronises with each peer. */
  start(): void {
    const c = this.#c;
    for (const rec of c.o.store.loadChannels()) c.track(rec);
    for (const pending of c.o.store.loadPendingOpens()) {
      // Nobody awaits a proposal from before the restart: its end is only logged.
      c.opening.resume(pending).catch((err) => c.log.info({ err: String(err) }, 'a channel proposal from before the restart ended unanswered'));
    }
    c.o.transport.setHandler({
      message: (from, frame) => c.dispatch.receive(from, frame),
      connected: () => this.resync(),
      peerDown: (peer) => c.events.emit('presence', { peer, online: false }),
      peerUp: (peer) => c.events.emit('presence', { peer, online: true }),
    });
    this.resync();
    for (const rt of c.channels.all()) c.virtuals.resume(rt);
    const idleMs = c.o.virtualLimits.idleMs;
    this.#idleSweep = setInterval(() => c.virtuals.settleIdle(), Math.max(10, Math.min(idleMs / 4, 30_000)));
    this.#idleSweep.unref();
    c.log.info({ channels: c.channels.size }, 'agent started');
  }

  /** Stops timers and fails waiting requests. The store and transport stay the caller's. */
  stop(): void {
    this.#c.outbox.flush();
    this.#c.halt(new ProtocolTimeoutError('agent stopped'));
  }

  /** The live channels (retired ones are in the store's archive). */
  channels(): ChannelRecord[] {
    return this.#c.channels.all().map((rt) => rt.rec);
  }

  /** The live channels with `peer`. */
  channelsWith(peer: Address): ChannelRecord[] {
    return this.#c.channels.withPeer(peer).map((rt) => rt.rec);
  }

  /** A channel, live or retired. */
  channel(id: Bytes32): ChannelRecord {
    return this.#c.channel(id);
  }

  /**
   * Retires a channel that is done: a final one that locks nothing, once its close
   * is on-chain (the gateway calls this after its close transaction lands). It leaves memory and the
   * resync set; the store archives it, and a peer that resynchronises later still gets
   * its final state. Virtual channels retire by themselves once settled.
   */
  retire(id: Bytes32): void {
    const c = this.#c;
    if (!c.channels.has(id) && c.o.store.loadChannel(id)) return; // retired already
    const rt = c.runtime(id);
    const rec = rt.rec;
    if (rec.phase !== 'final' || rec.staged || rec.current.state.outcome.locked.length > 0 || c.virtuals.isFunded(id)) {
      throw new ChannelClosedError(`channel ${id} is not final, or its funds are still locked`);
    }
    c.retire(rt);
  }

  /**
   * Forgets an open ledger channel in which nothing ever moved (version 0, nothing
   * proposed): a gateway's answer to a device that never deposited its side in time. The
   * gateway deposits only after the device, so nothing of its own is at stake; the record
   * is archived like a retired channel's.
   */
  abandon(id: Bytes32): void {
    const c = this.#c;
    const rt = c.runtime(id);
    const rec = rt.rec;
    if (rec.params.kind !== ChannelKind.Ledger || rec.phase !== 'open' || rec.current.state.version !== 0n || rec.staged) {
      throw new ChannelClosedError(`channel ${id} has moved since it opened: it cannot be abandoned`);
    }
    c.log.info({ channel: id, peer: rec.peer }, 'unfunded ledger channel abandoned');
    c.retire(rt);
  }

  /** Reports the peer's presence as `presence` events, where the transport can observe it (MQTT). */
  watchPeer(peer: Address): void {
    this.#c.o.transport.watchPeer?.(peer);
  }

  /**
   * Retires a ledger channel the chain has settled by dispute (concluded, every lock
   * released): whatever its state off-chain, nothing signed for it can move money any more.
   */
  retireSettled(id: Bytes32): void {
    const c = this.#c;
    if (!c.channels.has(id)) return;
    const rt = c.runtime(id);
    if (rt.rec.params.kind !== ChannelKind.Ledger) throw new ChannelClosedError(`channel ${id} is not a ledger channel`);
    c.log.info({ channel: id, peer: rt.rec.peer }, 'ledger channel settled on-chain retired');
    c.retire(rt);
  }

  /** Sends every channel's latest state to its peer; each side then adopts the newest. */
  resync(): void {
    const c = this.#c;
    for (const rt of c.channels.all()) {
      const sync = makeSync(rt.rec);
      if (sync) c.send(rt.rec.peer, sync);
      if (rt.rec.staged || rt.rec.phase === 'opening') c.retransmission.arm(rt);
    }
  }

  /** Proposes a channel to `peer` and resolves once both have signed its initial state. */
  open(peer: Address, options: OpenOptions): Promise<ChannelRecord> {
    return this.#c.opening.open(peer, options);
  }

  /**
   * Opens a virtual channel with `peer` through `gateway`, which must hold an open ledger
   * channel with each of them, and resolves once this side's ledger channel has locked
   * the funds. balances[asset] = [mine, peer's]; in a stream channel the opener pays.
   */
  openVirtual(peer: Address, options: OpenOptions & { gateway: Address }): Promise<ChannelRecord> {
    return this.#c.virtuals.open(peer, options);
  }

  /** Whether this side's ledger channel locks the virtual channel's funds (it may be used). */
  isFunded(id: Bytes32): boolean {
    return this.#c.virtuals.isFunded(id);
  }

  /** Whether a final virtual channel's funds are back in this side's ledger channel. */
  isSettled(id: Bytes32): boolean {
    return this.#c.virtuals.isSettled(id);
  }

  /** Stream payer: pays `amount` more; one message, no reply. Returns the new cumulative total. */
  payStream(id: Bytes32, amount: bigint): bigint {
    this.#c.assertLive();
    return this.#c.streams.pay(this.#c.runtime(id), amount);
  }

  /** Stream payer: what the payee has not acknowledged receiving yet. */
  streamUnacked(id: Bytes32): bigint {
    return this.#c.streams.unacked(this.#c.runtime(id));
  }

  /**
   * Stream payer: resolves once at most `maxUnacked` is unacknowledged. A payer that
   * awaits it before each payStream never runs further ahead of the payee than that, so
   * a slow payee's backlog (at the broker, or in its own queue) stays bounded. While it
   * waits, the latest voucher is sent again now and then: the payee acknowledges even a
   * repeat, so a lost acknowledgement does not stall the stream.
   */
  streamWindow(id: Bytes32, maxUnacked: bigint): Promise<void> {
    return this.#c.streams.window(id, maxUnacked);
  }

  /**
   * Ends a virtual channel: agrees its final state with the peer (for a stream, what the
   * latest voucher says), then this side's ledger channel takes its funds back through
   * the gateway. Resolves once that is done.
   */
  settleVirtual(id: Bytes32): Promise<ChannelRecord> {
    return this.#c.virtuals.settle(id);
  }

  /** Answers a proposal the policy held: accept signs and persists it, otherwise it is refused. */
  answerHeld(id: Bytes32, version: bigint, accept: boolean, reason: RejectReason = RejectReason.InvalidTerms): void {
    this.#c.updates.answerHeld(this.#c.runtime(id), version, accept, reason);
  }

  /** Pays `amount` of asset `asset` to the peer; resolves with the state both signed. */
  pay(id: Bytes32, amount: bigint, asset = 0): Promise<SignedState> {
    const idx = this.#c.runtime(id).rec.idx;
    return this.update(id, (s) => {
      const outcome = transfer(s.outcome, idx, amount, asset);
      return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
    });
  }

  /** Signs a final state with the current balances: nothing can follow it, and it concludes on-chain at once. */
  finalize(id: Bytes32): Promise<SignedState> {
    return this.update(id, finalBody);
  }

  /**
   * Proposes the state `build` derives from the current one. Requests on a channel run
   * one at a time, in order; `build` sees the state as it is when its turn comes. Locks
   * cannot change here: only the virtual-channel protocol moves them, with its evidence.
   */
  update(id: Bytes32, build: Op['build']): Promise<SignedState> {
    return this.#c.requests.enqueue(id, build);
  }
}
