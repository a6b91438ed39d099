import { closeRequest } from '../channel/control.ts';
import type { ChannelRecord } from '../channel/record.ts';
import { finalBody } from '../channel/update.ts';
import { claimBody, lockBody, streamFinalBody, unlockBody } from '../channel/virtual.ts';
import { InvalidAllocationError, ProtocolTimeoutError, UnknownChannelError } from '../errors.ts';
import { MAX_LOCKED } from '../model/allocation.ts';
import { fromHex, toHex } from '../model/hash.ts';
import { type Address, type Bytes32, ChannelKind, type SignedState, type State } from '../model/types.ts';
import { type OpenPropose, RejectReason } from '../wire/messages.ts';
import type { Core } from './core.ts';
import { abandoned, type Runtime } from './runtime.ts';
import type { OpenOptions } from './types.ts';

/**
 * An open stream of which this side is the payee and holds a voucher: paid while funded, so
 * a lock of it that went away went by its claim (see Virtuals.claim).
 */
function claimed(vc: ChannelRecord): boolean {
  return vc.params.kind === ChannelKind.Stream && vc.idx === 1 && vc.phase === 'open' && vc.voucher !== undefined;
}

/**
 * Virtual channels on a device: opened with a peer, funded by a lock in this side's ledger
 * channel with the gateway (a FundRequest the gateway matches with the peer's), settled
 * back into it once final (a SettleRequest, asked again until the gateway signs), and
 * retired after. Idle ones are settled, and slots are limited per peer.
 */
export class Virtuals {
  /** Funding requests in flight, by virtual channel: open fails as soon as its request does. */
  readonly #funding = new Map<Bytes32, Promise<SignedState>>();
  /** Virtual channels whose settlement into the ledger channel is being asked for. */
  readonly #settling = new Set<Bytes32>();

  constructor(private readonly c: Core) {}

  /** See Agent.openVirtual. */
  async open(peer: Address, options: OpenOptions & { gateway: Address }): Promise<ChannelRecord> {
    const c = this.c;
    const parent = this.parentFor(options.gateway);
    if (this.fundingLoad(parent) >= MAX_LOCKED) throw new InvalidAllocationError(`the ledger channel with ${options.gateway} already funds ${MAX_LOCKED} virtual channels`);
    const kind = options.kind ?? ChannelKind.Virtual;
    const vc = await c.opening.open(peer, { ...options, kind, assets: [...parent.rec.current.state.outcome.assets] });
    await this.#funding.get(vc.id);
    return this.#when(vc.id, 'funded', () => this.isFunded(vc.id));
  }

  /** Whether this side's ledger channel locks the virtual channel's funds (it may be used). */
  isFunded(id: Bytes32): boolean {
    const vc = this.c.channels.get(id)?.rec;
    if (!vc) return false; // retired: settled, or never funded
    const parent = vc.virtual && this.c.channels.get(vc.virtual.parent);
    return !!parent && parent.rec.current.state.outcome.locked.some((l) => l.id === id);
  }

  /** Whether a final virtual channel's funds are back in this side's ledger channel. */
  isSettled(id: Bytes32): boolean {
    const vc = this.c.channel(id);
    return vc.phase === 'final' && !this.isFunded(id);
  }

  /** See Agent.settleVirtual. */
  async settle(id: Bytes32): Promise<ChannelRecord> {
    const c = this.c;
    // Settled and retired already (the peer asked first): done.
    if (!c.channels.has(id) && this.isSettled(id)) return c.channel(id);
    const rt = c.runtime(id);
    if (!rt.rec.virtual) throw new UnknownChannelError(`${id} is not a virtual channel`);
    if (rt.rec.phase !== 'final') {
      if (rt.rec.params.kind === ChannelKind.Stream) {
        if (rt.rec.idx === 0) await c.requests.enqueue(id, () => streamFinalBody(rt.rec, rt.rec.voucher?.cumulative ?? 0n));
        else c.send(rt.rec.peer, closeRequest(rt.rec, c.o.signer));
      } else {
        await c.requests.enqueue(id, finalBody);
      }
    }
    return this.#when(id, 'settled', () => this.isSettled(id));
  }

  /** A parent update that added or removed a virtual channel's lock makes it funded or settled. */
  announceLockChanges(before: ChannelRecord, after: ChannelRecord): void {
    const c = this.c;
    const was = new Set(before.current.state.outcome.locked.map((l) => l.id));
    const now = new Set(after.current.state.outcome.locked.map((l) => l.id));
    for (const id of now) {
      const vrt = c.channels.get(id);
      if (was.has(id) || !vrt) continue;
      const vc = vrt.rec;
      c.notify(() => c.events.emit('funded', vc));
      const waiting = vrt.awaitingFunds;
      vrt.awaitingFunds = null;
      if (waiting) c.notify(() => void c.updates.onUpdate(vrt, waiting).catch((err) => c.refused(vc.peer, err)));
    }
    for (const id of was) {
      const vrt = c.channels.get(id);
      if (now.has(id) || !vrt) continue;
      const vc = vrt.rec;
      c.notify(() => c.events.emit('settled', vc));
      // Its funds are back, per a final state both signed, or per its payee's claim: nothing is left to do with it.
      if (vc.phase === 'final' || claimed(vc)) c.afterCommit(() => c.retire(vrt));
    }
  }

  /** Resolves with the channel once `done()` holds, checked now and at each `event`. */
  #when(id: Bytes32, event: 'funded' | 'settled', done: () => boolean): Promise<ChannelRecord> {
    const c = this.c;
    return new Promise((resolve, reject) => {
      if (done()) return resolve(c.channel(id));
      const timer = setTimeout(() => {
        c.events.off(event, check);
        reject(new ProtocolTimeoutError(`virtual channel ${id} not ${event} in time`));
      }, c.timing.requestTimeoutMs * 2);
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        c.events.off(event, check);
        resolve(c.channel(id));
      };
      c.events.on(event, check);
    });
  }

  /** Asks the gateway, through this side's ledger channel, to lock the virtual channel's funds. */
  fund(vc: Runtime): void {
    const c = this.c;
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
    const funding = c.requests.enqueue(parent, () => lockBody(c.runtime(parent).rec, vc.rec, c.o.virtualFee), { fund });
    this.#funding.set(vc.rec.id, funding);
    funding
      .catch((err) => {
        c.log.warn({ channel: vc.rec.id, err: String(err) }, 'funding the virtual channel failed');
        // A peer's proposal waiting for these funds will not get them: refuse it now.
        const waiting = vc.awaitingFunds;
        vc.awaitingFunds = null;
        if (waiting) c.updates.refuse(vc, waiting.version, RejectReason.Policy);
      })
      .finally(() => {
        this.#funding.delete(vc.rec.id);
        this.dropUnfunded(vc.rec.id);
      });
  }

  /**
   * A virtual channel whose funding failed, with no lock in its parent and none asked for
   * any more, will never be funded: it is retired, so that it holds no slot and a restart
   * does not fund what the caller was told had failed.
   */
  dropUnfunded(vcId: Bytes32): void {
    const vc = this.c.channels.get(vcId);
    if (vc && this.#unfundable(vc)) this.c.afterCommit(() => this.c.retire(vc));
  }

  /** An open virtual channel that nothing funds, nor will: no lock in the parent, none being asked for. */
  #unfundable(vc: Runtime): boolean {
    const parent = vc.rec.virtual && this.c.channels.get(vc.rec.virtual.parent);
    return !!parent && vc.rec.phase === 'open' && !this.isFunded(vc.rec.id) && !this.#funding.has(vc.rec.id) && !this.#askedInFlight(parent, vc.rec.id);
  }

  /**
   * Asks the gateway to settle a final virtual channel's funds into this side's ledger
   * channel, and asks again, backing off, until they are back: the gateway refuses when
   * the other device's request does not come within its hold time, and both must ask.
   */
  settleParent(vc: Runtime, backoff = this.c.timing.retransmitMs): void {
    const c = this.c;
    const id = vc.rec.id;
    if (this.#settling.has(id) || c.stopped) return;
    const parent = vc.rec.virtual!.parent;
    const cur = vc.rec.current;
    const settle = { id: fromHex(id), version: cur.state.version, balances: cur.state.outcome.balances, sigs: cur.sigs as readonly [Uint8Array, Uint8Array] };
    this.#settling.add(id);
    c.requests
      .enqueue(parent, () => unlockBody(c.runtime(parent).rec, c.runtime(id).rec), { settle })
      .catch((err) => {
        c.log.warn({ channel: id, err: String(err), retryInMs: backoff }, 'settling the virtual channel failed');
        const retry = setTimeout(() => {
          if (vc.rec.phase === 'final' && this.isFunded(id)) this.settleParent(vc, c.doubled(backoff));
        }, (0.5 + Math.random()) * backoff);
        retry.unref();
      })
      .finally(() => this.#settling.delete(id));
  }

  /**
   * Stream payee whose payer answers no close request: asks the gateway to release the
   * lock in this side's ledger channel per the highest voucher it holds (a ClaimRequest);
   * once signed, the stream is done here. Asked again at each sweep until it is.
   */
  claim(vc: Runtime): void {
    const c = this.c;
    const id = vc.rec.id;
    const voucher = vc.rec.voucher;
    if (!voucher || this.#settling.has(id) || c.stopped) return;
    const parent = vc.rec.virtual!.parent;
    const claim = { id: fromHex(id), cumulative: voucher.cumulative, sig: voucher.sig };
    this.#settling.add(id);
    c.log.warn({ channel: id, peer: vc.rec.peer, cumulative: voucher.cumulative.toString() }, 'the payer does not answer: claiming the highest voucher from the gateway');
    c.requests
      .enqueue(parent, () => claimBody(c.runtime(parent).rec, c.runtime(id).rec, voucher.cumulative), { claim })
      .catch((err) => c.log.warn({ channel: id, err: String(err) }, 'claiming the stream failed (asked again at the next sweep)'))
      .finally(() => this.#settling.delete(id));
  }

  /** After a restart: ask again for what each virtual channel was waiting on, unless that is still in flight. */
  resume(rt: Runtime): void {
    const info = rt.rec.virtual;
    const parent = info && this.c.channels.get(info.parent);
    if (!parent || this.#askedInFlight(parent, rt.rec.id)) return;
    // A crash came between a claim and retiring the stream: it is done, not to be funded again.
    if (claimed(rt.rec) && !this.isFunded(rt.rec.id)) this.c.retire(rt);
    else if (rt.rec.phase === 'open' && !this.isFunded(rt.rec.id)) this.fund(rt);
    if (rt.rec.phase === 'final' && this.isFunded(rt.rec.id)) this.settleParent(rt);
    // A crash came between settling and retiring it.
    else if (rt.rec.phase === 'final' && !rt.rec.staged) this.c.retire(rt);
  }

  /**
   * Settles every funded virtual channel idle for idleMs, so that a peer that stops using
   * one does not keep its funds, or this side's slot, for ever. Asked again at each sweep
   * while the peer does not answer. (A peer gone for good is the watcher's to dispute on-chain.)
   * One whose funding failed, with nothing locked or being locked, is retired.
   */
  settleIdle(): void {
    const c = this.c;
    const now = Date.now();
    for (const rt of c.channels.all()) {
      const rec = rt.rec;
      if (!rec.virtual || rec.phase !== 'open') continue;
      if (!this.isFunded(rec.id)) {
        if (abandoned(rt, c.timing) && this.#unfundable(rt)) c.retire(rt);
        continue;
      }
      if (now - rt.active < c.o.virtualLimits.idleMs) continue;
      // Only the payer proposes in a stream: the payee asks it to.
      const stream = rec.params.kind === ChannelKind.Stream;
      if (stream ? rec.idx !== 1 : rt.inflight || rt.queue.length > 0) continue;
      // A payer that answered no close request for another idle period is gone: claim.
      if (stream && now - rt.active >= 2 * c.o.virtualLimits.idleMs && rec.voucher) {
        this.claim(rt);
        continue;
      }
      c.log.info({ channel: rec.id, peer: rec.peer, idleMs: now - rt.active }, 'settling an idle virtual channel');
      if (stream) c.send(rec.peer, closeRequest(rec, c.o.signer));
      else c.requests.enqueue(rec.id, finalBody).catch((err) => c.log.debug({ channel: rec.id, err: String(err) }, 'closing an idle virtual channel failed'));
    }
  }

  /** Whether the parent's proposal in flight is the request to fund or settle `vcId`. */
  #askedInFlight(parent: Runtime, vcId: Bytes32): boolean {
    const staged = parent.rec.staged;
    if (!staged?.attachment) return false;
    if ('settle' in staged.attachment) return toHex(staged.attachment.settle.id) === vcId;
    if ('claim' in staged.attachment) return toHex(staged.attachment.claim.id) === vcId;
    const locks = (s: State): boolean => s.outcome.locked.some((l) => l.id === vcId);
    return locks(staged.state) && !locks(parent.rec.current.state);
  }

  /**
   * Virtual channels a ledger channel funds or is about to: those it locks, those being
   * funded, those accepted and not open yet, and those this side is proposing. One whose
   * funding failed does not count: it will not be locked.
   */
  fundingLoad(parent: Runtime): number {
    const c = this.c;
    const counted = new Set(parent.rec.current.state.outcome.locked.map((l) => l.id));
    for (const rt of c.channels.all()) {
      const id = rt.rec.id;
      if (rt.rec.virtual?.parent !== parent.rec.id) continue;
      if (this.#funding.has(id) || (rt.rec.phase === 'opening' && !abandoned(rt, c.timing))) counted.add(id);
    }
    return counted.size + c.opening.proposingThrough(parent.rec.peer);
  }

  /** Whether `from` may open one more virtual channel with this side, with the lock it proposes. */
  withinLimits(from: Address, m: OpenPropose): boolean {
    const c = this.c;
    const { perPeer, minLock } = c.o.virtualLimits;
    const [x, y] = m.balances[0]!;
    if (x + y < minLock) return false;
    let live = 0;
    for (const rt of c.channels.withPeer(from)) {
      const rec = rt.rec;
      if (rec.params.kind === ChannelKind.Ledger || rec.phase === 'final') continue;
      if (rec.phase === 'opening' && abandoned(rt, c.timing)) continue;
      live++;
    }
    return live < perPeer;
  }

  /** This side's open ledger channel with `gateway`, which funds its virtual channels. */
  parentFor(gateway: Address): Runtime {
    const rt = this.ledgerWith(gateway);
    if (!rt) throw new UnknownChannelError(`no open ledger channel with gateway ${gateway.toLowerCase()}`);
    return rt;
  }

  ledgerWith(peer: Address): Runtime | undefined {
    return this.c.channels.withPeer(peer).find((r) => r.rec.params.kind === ChannelKind.Ledger && r.rec.phase === 'open');
  }
}
