import { assertEvidencedLocks } from '../channel/intermediary.ts';
import { type Attachment, sameState } from '../channel/record.ts';
import { prepare, propose } from '../channel/update.ts';
import { ProtocolTimeoutError } from '../errors.ts';
import type { Bytes32, SignedState } from '../model/types.ts';
import type { Core } from './core.ts';
import { withAttachment } from './rules.ts';
import type { Op, Runtime } from './runtime.ts';

/**
 * This side's requests to change a channel: one queue per channel, run one at a time and
 * in order, the next one prepared while the current one waits for the peer (pipelining),
 * and the tie-break between two sides that propose at once.
 */
export class Requests {
  constructor(private readonly c: Core) {}

  /**
   * Queues the state `build` derives from the current one; `build` sees the state as it
   * is when its turn comes. Locks change only with the evidence that names them (the
   * virtual-channel protocol's `attachment`).
   */
  async enqueue(id: Bytes32, build: Op['build'], attachment?: Attachment): Promise<SignedState> {
    this.c.assertLive();
    const rt = this.c.runtime(id);
    const checked: Op['build'] = (s) => {
      const body = build(s);
      assertEvidencedLocks(s, { outcome: { assets: s.outcome.assets, balances: body.balances, locked: body.locked } }, attachment, this.c.address, this.c.o.chain);
      return body;
    };
    return new Promise<SignedState>((resolve, reject) => {
      const op: Op = {
        build: checked,
        attachment,
        resolve,
        reject,
        carriedBy: [],
        deadline: setTimeout(() => this.#expire(rt, op), this.c.timing.requestTimeoutMs),
      };
      rt.queue.push(op);
      this.pump(rt);
    });
  }

  /** Proposes the next queued request, unless one is out, staged or paused. */
  pump(rt: Runtime): void {
    const c = this.c;
    while (!c.stopped && !rt.paused && !rt.inflight && !rt.rec.staged && rt.queue.length > 0) {
      const op = rt.queue.shift()!;
      let proposal;
      try {
        proposal = propose(rt.rec, c.o.signer, op.build(rt.rec.current.state), rt.contended?.peerSigned);
      } catch (err) {
        this.fail(op, err);
        continue;
      }
      const record = op.attachment ? { ...proposal.record, staged: { ...proposal.record.staged!, attachment: op.attachment } } : proposal.record;
      c.commit(rt, record);
      rt.inflight = op;
      op.carriedBy.push(proposal.state);
      c.send(rt.rec.peer, withAttachment(proposal.message, op.attachment));
      c.retransmission.arm(rt);
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
    if (this.c.stopped || rt.paused || rt.contended || !rt.inflight || rt.preparedOp || !staged || staged.attachment || rt.rec.prepared || !op || op.attachment) return;
    let record;
    try {
      record = prepare(rt.rec, this.c.o.signer, op.build(staged.state));
    } catch {
      return; // built again when its turn comes, and refused then if it still does not fit
    }
    rt.queue.shift();
    this.c.commit(rt, record);
    rt.preparedOp = op;
  }

  /** A prepared proposal that will not go out: its request waits at the head of the queue. */
  unprepare(rt: Runtime): void {
    const op = rt.preparedOp;
    rt.preparedOp = null;
    if (op) rt.queue.unshift(op);
  }

  /**
   * A state of the channel is fully signed: this side's proposal ('out', its request is
   * done) or the peer's ('in'). Announced; a final virtual channel is settled next.
   */
  signed(rt: Runtime, state: SignedState, direction: 'in' | 'out'): void {
    const c = this.c;
    rt.active = Date.now();
    if (direction === 'out') {
      const op = rt.inflight;
      rt.inflight = null;
      if (op) this.resolve(op, state);
      if (rt.yielding) this.#pauseFor(rt, 2 * c.timing.retransmitMs);
      rt.yielding = false;
      rt.contended = null;
    } else if (rt.paused) {
      this.#resume(rt);
    }
    const channel = rt.rec;
    queueMicrotask(() => {
      c.events.emit('updated', { channel, state, direction });
      if (state.state.isFinal) c.events.emit('final', channel);
    });
    if (state.state.isFinal && channel.virtual && c.virtuals.isFunded(channel.id)) c.virtuals.settleParent(rt);
  }

  /**
   * Requests that `state` already carries (see Op.carriedBy) are done, wherever they wait:
   * queued, prepared or in flight. A proposal still out for one of them stays out with no
   * request, like one whose request timed out.
   */
  landed(rt: Runtime, state: SignedState): void {
    const carries = (op: Op | null): op is Op => !!op && op.carriedBy.some((s) => sameState(s, state.state));
    const done = [rt.inflight, rt.preparedOp, ...rt.queue].filter(carries);
    if (done.length === 0) return;
    if (carries(rt.inflight)) rt.inflight = null;
    if (carries(rt.preparedOp)) rt.preparedOp = null;
    rt.queue = rt.queue.filter((op) => !carries(op));
    for (const op of done) this.resolve(op, state);
  }

  resolve(op: Op, state: SignedState): void {
    clearTimeout(op.deadline);
    // If this step's write fails, the request fails instead (see Outbox.flush).
    this.c.outbox.waitOn(op);
    this.c.notify(() => op.resolve(state));
  }

  fail(op: Op, err: unknown): void {
    clearTimeout(op.deadline);
    op.reject(err);
  }

  #expire(rt: Runtime, op: Op): void {
    if (rt.inflight === op) rt.inflight = null;
    if (rt.preparedOp === op) {
      rt.preparedOp = null;
      // Once sent, it stays like a staged one: the peer may still sign it.
      if (!rt.rec.prepared?.sent) this.c.commit(rt, { ...rt.rec, prepared: null }, false);
    }
    rt.queue = rt.queue.filter((o) => o !== op);
    // A staged proposal stays: the peer may still sign it, so it is retransmitted until the peer answers.
    op.reject(new ProtocolTimeoutError(`no answer from ${rt.rec.peer} within ${this.c.timing.requestTimeoutMs} ms`));
    this.pump(rt);
  }

  /**
   * A request that lost a tie-break goes back to the head of the queue, and this side
   * holds its proposals for a moment so that the winner's goes through first. It is
   * retried until its deadline: the winner makes progress every time.
   */
  retryLater(rt: Runtime, op: Op): void {
    rt.queue.unshift(op);
    this.#pauseFor(rt, (0.5 + Math.random()) * this.c.timing.retransmitMs);
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
    this.pump(rt);
  }
}
