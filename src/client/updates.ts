import { lockDiff } from '../channel/intermediary.ts';
import { type Attachment, stagedMessage, stateFromBody } from '../channel/record.ts';
import { receiveSync } from '../channel/sync.ts';
import { voucherMessage } from '../channel/virtual.ts';
import { type AcceptResult, receiveAccept, receiveReject, receiveUpdate, refuse, sendPrepared, verifiedProposal } from '../channel/update.ts';
import { UpdateConflictError } from '../errors.ts';
import { ChannelKind, type SignedState, type State } from '../model/types.ts';
import { RejectReason, type Sync, type Update, type UpdateAccept, type UpdateReject } from '../wire/messages.ts';
import type { Core } from './core.ts';
import { kindRule, reliesOn } from './rules.ts';
import type { Runtime, Verified } from './runtime.ts';

/**
 * The update protocol on the receiving end: the peer's proposals (verified, checked by the
 * channel kind's rule and the policy, then signed, held or refused), the peer's answers to
 * this side's proposals (acceptances, refusals, ties), and resynchronisation.
 */
export class Updates {
  constructor(private readonly c: Core) {}

  async onUpdate(rt: Runtime, msg: Update, attachment?: Attachment, attempts = 3): Promise<void> {
    const c = this.c;
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
      if (allowed && before.virtual && !c.virtuals.isFunded(before.id)) {
        rt.awaitingFunds = msg;
        c.log.debug({ channel: before.id, version: msg.version }, 'proposal waits until this side has locked the funds');
        return;
      }
      const decision = allowed && (await c.policy.acceptUpdate({ channel: before, current: before.current.state, proposed, attachment }));
      if (rt.rec !== before) return attempts > 0 ? this.onUpdate(rt, msg, attachment, attempts - 1) : undefined;
      // A copy of this proposal may have been held while the policy ran: keep that one.
      if (rt.held && rt.held.msg.version === msg.version) return this.onUpdate(rt, msg, attachment, 0);
      if (decision === 'hold') {
        rt.held = { msg, attachment, verified: { on: before, state: proposed } };
        this.#emitHeld(rt, msg, attachment);
        return;
      }
      if (!decision) {
        this.refuse(rt, msg.version, RejectReason.Policy);
        return;
      }
    }
    this.#answer(rt, msg, proposed ? { on: before, state: proposed } : undefined);
  }

  /** Answers a proposal the policy held: accept signs and persists it, otherwise it is refused. */
  answerHeld(rt: Runtime, version: bigint, accept: boolean, reason: RejectReason): void {
    const held = rt.held;
    if (!held || held.msg.version !== version) return;
    rt.held = null;
    if (accept) return this.#answer(rt, held.msg, held.verified);
    this.refuse(rt, version, reason);
  }

  /** Refuses the peer's verified proposal, never to sign that version after (see refuse). */
  refuse(rt: Runtime, version: bigint, reason: RejectReason): void {
    const { record, reply } = refuse(rt.rec, this.c.o.signer, version, reason);
    this.c.commit(rt, record);
    this.c.send(rt.rec.peer, reply);
  }

  /**
   * The peer proposed while this side's proposal was out: a tie, refused. Its version counts
   * once its signature does, and like any refused proposal (see refuse) it is never signed
   * after: participant 1 lets a refused proposal go and retries its change on a later state,
   * and participant 0 re-proposes its own at a fresh version. Signing the refused one later
   * (a duplicate, or the Sync the peer sent before it heard no) would apply that change
   * twice, once in the signed copy and once in the retry. Stored before the refusal leaves.
   */
  #refuseTie(rt: Runtime, msg: Update): void {
    let peerSigned = rt.contended?.peerSigned ?? -1n;
    if (msg.version > peerSigned) {
      try {
        verifiedProposal({ ...rt.rec, staged: null, highestSigned: rt.rec.current.state.version }, msg);
        peerSigned = msg.version;
      } catch {
        // not the peer's, or not a version it could propose: no hint, and nothing to refuse
      }
    }
    rt.contended = { peerSigned };
    if (peerSigned > rt.rec.highestSigned) this.c.commit(rt, { ...rt.rec, highestSigned: peerSigned });
  }

  #emitHeld(rt: Runtime, msg: Update, attachment?: Attachment): void {
    const channel = rt.rec;
    const proposed = stateFromBody(channel, msg);
    this.c.notify(() => this.c.events.emit('held', { channel, current: channel.current.state, proposed, attachment }));
  }

  /** Signs and persists the peer's proposal (or answers a repeat, or refuses it with a typed reason). */
  #answer(rt: Runtime, msg: Update, verified?: Verified): void {
    const c = this.c;
    const result = receiveUpdate(rt.rec, c.o.signer, msg, verified?.on === rt.rec ? verified.state : undefined);
    if (result.kind === 'accepted') {
      c.commit(rt, result.record);
      c.send(rt.rec.peer, result.reply);
      c.requests.signed(rt, result.state, 'in');
    } else {
      if (result.kind === 'rejected' && result.error instanceof UpdateConflictError) this.#refuseTie(rt, msg);
      c.send(rt.rec.peer, result.reply);
      if (result.kind === 'rejected') c.refused(rt.rec.peer, result.error);
    }
  }

  async onAccept(rt: Runtime, msg: UpdateAccept): Promise<void> {
    const c = this.c;
    const early = rt.sendEarly ? sendPrepared(rt.rec, msg) : null;
    if (early) {
      // The prepared proposal leaves first; the acceptance is verified on the next turn,
      // once the transport has written it (mqtt.js writes on the next tick), while the
      // peer already works on it. Meanwhile this channel's messages wait (see Dispatch).
      // It was stored when it was signed (a failed write would have stopped the agent), so
      // it leaves without another write; the mark `sent` is stored with the next one.
      c.keep(rt, early.record);
      c.send(rt.rec.peer, early.message);
      // Built on the staged proposal, it carries that request's change too.
      for (const op of [rt.inflight, rt.preparedOp]) op?.carriedBy.push(early.record.prepared!.state);
      rt.verifying = new Promise<void>((next) => setImmediate(next));
      await rt.verifying;
      rt.verifying = null;
      if (c.stopped) return;
    }
    this.#acceptOwn(rt, msg);
  }

  #acceptOwn(rt: Runtime, msg: UpdateAccept): void {
    const c = this.c;
    const wasOpening = rt.rec.phase === 'opening';
    const nextWasSent = !!rt.rec.prepared?.sent;
    let result;
    try {
      result = receiveAccept(rt.rec, msg);
    } catch (err) {
      // A peer that sent one bad acceptance gets no more head start on this channel; the
      // proposal that left stays out, and is stored as sent.
      if (nextWasSent) {
        rt.sendEarly = false;
        c.commit(rt, rt.rec, false);
      }
      throw err;
    }
    if (!result) return;
    // A promoted prepared proposal was stored durably when it was signed.
    c.commit(rt, result.record, wasOpening || reliesOn(rt.rec, result.state.state));
    c.retransmission.clear(rt);
    if (wasOpening) c.opening.opened(rt);
    else this.#completeOwn(rt, result.state, result.completed);
    if (rt.rec.staged && !nextWasSent) {
      c.send(rt.rec.peer, stagedMessage(rt.rec));
      rt.inflight?.carriedBy.push(rt.rec.staged.state);
    }
    if (rt.rec.staged) c.retransmission.arm(rt);
    c.requests.pump(rt);
  }

  /**
   * The peer signed this side's proposal: its request is done, and so is the prepared
   * one's when that was what the peer signed ('both'). Otherwise the prepared proposal,
   * now staged, carries its request.
   */
  #completeOwn(rt: Runtime, state: SignedState, completed: AcceptResult['completed']): void {
    const prepared = rt.preparedOp;
    rt.preparedOp = null;
    this.c.requests.signed(rt, state, 'out');
    if (completed === 'both') {
      if (prepared) this.c.requests.resolve(prepared, state);
    } else if (rt.rec.staged) {
      rt.inflight = prepared;
    } else if (prepared) {
      rt.queue.unshift(prepared);
    }
  }

  onReject(rt: Runtime, msg: UpdateReject): void {
    const c = this.c;
    const result = receiveReject(rt.rec, c.o.signer, msg, rt.contended?.peerSigned);
    if (!result) return;
    c.requests.unprepare(rt);
    if (result.kind === 'retry') {
      rt.yielding = true;
      c.commit(rt, result.proposal.record);
      c.send(rt.rec.peer, result.proposal.message);
      rt.inflight?.carriedBy.push(result.proposal.state);
      return;
    }
    const refused = rt.rec.staged;
    c.commit(rt, result.record);
    c.retransmission.clear(rt);
    const op = rt.inflight;
    rt.inflight = null;
    if (op && result.error instanceof UpdateConflictError) c.requests.retryLater(rt, op);
    else if (op) c.requests.fail(op, result.error);
    // A funding request refused after its caller gave up (it timed out): nothing else will fund it.
    if (refused?.attachment && 'fund' in refused.attachment) {
      const [vcId] = lockDiff(rt.rec.current.state, refused.state).added;
      if (vcId) c.virtuals.dropUnfunded(vcId);
    }
    c.requests.pump(rt);
  }

  async onSync(rt: Runtime, msg: Sync): Promise<void> {
    const c = this.c;
    const result = receiveSync(rt.rec, c.o.signer, msg);
    if (result.record) {
      const wasOpening = rt.rec.phase === 'opening';
      c.commit(rt, result.record);
      if (wasOpening) c.opening.opened(rt);
    }
    if (result.adopted) {
      const completed = result.staged === 'completed' || result.staged === 'bothCompleted';
      if (completed) {
        this.#completeOwn(rt, result.adopted, result.staged === 'bothCompleted' ? 'both' : 'staged');
      } else {
        // Requests whose proposals are gone go back to the queue, in their order.
        if (!rt.rec.prepared) c.requests.unprepare(rt);
        const op = rt.inflight;
        if (result.staged === 'superseded' && op) {
          rt.inflight = null;
          c.requests.retryLater(rt, op);
        }
      }
      // Before anything is built on the adopted state: what it already carries is done.
      c.requests.landed(rt, result.adopted);
      if (!completed && result.adopted.state.version > 0n) c.requests.signed(rt, result.adopted, 'in');
      if (!rt.rec.staged) c.retransmission.clear(rt);
    }
    for (const reply of result.replies) c.send(rt.rec.peer, reply);
    // A stream's resync carries each side's highest voucher: the payer's, for a payee whose
    // store lost the last ones; the payee's, for a payer whose record trails what it signed.
    const voucher = rt.rec.params.kind === ChannelKind.Stream && rt.rec.phase === 'open' ? voucherMessage(rt.rec) : null;
    if (voucher) c.send(rt.rec.peer, voucher);
    if (result.peerProposal) await this.onUpdate(rt, result.peerProposal);
    c.requests.pump(rt);
  }
}
