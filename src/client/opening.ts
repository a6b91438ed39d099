import { openReject, openRejectedBy } from '../channel/control.ts';
import { acceptOpen, completeOpen, openAcceptOf, type PendingOpen, proposeOpen, verifyProposal } from '../channel/open.ts';
import { aliasOf, type ChannelRecord } from '../channel/record.ts';
import { reasonOf } from '../channel/update.ts';
import { AliasCollisionError, OpenRejectedError, ProtocolError, ProtocolTimeoutError, WrongPeerError } from '../errors.ts';
import { MAX_LOCKED } from '../model/allocation.ts';
import { toHex } from '../model/hash.ts';
import { type Address, ChannelKind, NATIVE_ASSET } from '../model/types.ts';
import { MessageType, type OpenAccept, type OpenPropose, type OpenReject, RejectReason } from '../wire/messages.ts';
import type { Core } from './core.ts';
import type { Runtime } from './runtime.ts';
import type { OpenOptions } from './types.ts';

interface OpenWaiter {
  pending: PendingOpen;
  resolve: (rec: ChannelRecord) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout | null;
  backoff: number;
}

/**
 * The open protocol, both sides: the proposer stores its proposal and sends it until the
 * peer answers or the request times out; the accepter checks the terms and its limits,
 * stores the channel and the proposal it answered (a repeat gets the same answer), and
 * sends its acceptance until the proposer's countersignature comes.
 */
export class Opening {
  /** This side's proposals waiting for an answer, by the proposer's share. */
  readonly #opens = new Map<string, OpenWaiter>();

  constructor(private readonly c: Core) {}

  /** Proposes a channel to `peer` and resolves once both have signed its initial state. */
  async open(peer: Address, options: OpenOptions): Promise<ChannelRecord> {
    const c = this.c;
    c.assertLive();
    const pending = proposeOpen(c.o.signer, {
      peer: peer.toLowerCase() as Address,
      chainId: c.o.chain.chainId,
      adjudicator: c.o.chain.adjudicator,
      challengeDuration: options.challengeDuration ?? c.o.challengeDuration,
      kind: options.kind ?? ChannelKind.Ledger,
      assets: options.assets ?? [NATIVE_ASSET],
      balances: options.balances,
      gateway: options.gateway?.toLowerCase() as Address | undefined,
    });
    const failed = c.persist(() => c.o.store.savePendingOpen(toHex(pending.message.share), pending));
    if (failed) throw failed;
    return this.resume(pending);
  }

  /** Sends a stored proposal until it is answered or times out (also after a restart). */
  resume(pending: PendingOpen): Promise<ChannelRecord> {
    const c = this.c;
    const key = toHex(pending.message.share);
    return new Promise<ChannelRecord>((resolve, reject) => {
      const w: OpenWaiter = { pending, resolve, reject, timer: null, backoff: c.timing.retransmitMs };
      this.#opens.set(key, w);
      const deadline = Date.now() + c.timing.requestTimeoutMs;
      const attempt = (): void => {
        if (!this.#opens.has(key) || c.stopped) return;
        if (Date.now() > deadline) {
          this.#opens.delete(key);
          if (c.persist(() => c.o.store.deletePendingOpen(key))) return;
          return reject(new ProtocolTimeoutError(`no answer to the channel proposal from ${pending.context.participants[1]}`));
        }
        c.send(pending.context.participants[1], pending.message);
        w.timer = setTimeout(attempt, w.backoff);
        w.timer.unref();
        w.backoff = c.doubled(w.backoff);
      };
      attempt();
    });
  }

  /** How many of this side's proposals wait for an answer whose virtual channel `gateway` would fund. */
  proposingThrough(gateway: Address): number {
    let n = 0;
    for (const w of this.#opens.values()) if (w.pending.message.gateway === gateway) n++;
    return n;
  }

  /** The agent stopped: every proposal waiting for an answer fails with `reason`. */
  failAll(reason: unknown): void {
    for (const w of this.#opens.values()) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(reason);
    }
    this.#opens.clear();
  }

  async onPropose(from: Address, m: OpenPropose): Promise<void> {
    const c = this.c;
    const shareA = toHex(m.share);
    const known = c.o.store.acceptedOpen(shareA);
    if (known) {
      // A repeat (our answer was lost, or a replay): the same answer again, nothing new.
      const rt = c.channels.get(known.channelId);
      if (rt) c.send(from, openAcceptOf(rt.rec));
      return;
    }
    const reply = (reason: RejectReason): void => c.send(from, openReject(c.o.signer, m.share, reason));
    let peerKey: Uint8Array;
    try {
      peerKey = verifyProposal(c.address, m, from, c.o.chain);
    } catch (err) {
      // The reason, a bad signature included: a proposal signed for another chain looks forged.
      if (err instanceof ProtocolError) reply(reasonOf(err));
      throw err;
    }
    if (!(await c.policy.acceptOpen(m, from))) return reply(RejectReason.Policy);
    if (c.o.store.acceptedOpen(shareA)) return; // answered while the policy ran
    let virtual: ChannelRecord['virtual'];
    if (m.kind !== ChannelKind.Ledger) {
      // A virtual channel is funded by our ledger channel with the gateway it names.
      const parent = m.gateway && c.virtuals.ledgerWith(m.gateway);
      if (!parent || c.virtuals.fundingLoad(parent) >= MAX_LOCKED) return reply(RejectReason.InvalidTerms);
      if (!c.virtuals.withinLimits(from, m)) return reply(RejectReason.Policy);
      virtual = { gateway: m.gateway!, parent: parent.rec.id };
    }
    const accepted = acceptOpen(c.o.signer, m, from, c.o.chain, peerKey);
    const record: ChannelRecord = virtual ? { ...accepted.record, virtual } : accepted.record;
    const accept = accepted.reply;
    if (c.channels.byAlias(aliasOf(record.id))) return reply(RejectReason.InvalidTerms);
    const failed = c.persist(() =>
      c.o.store.atomically(() => {
        c.o.store.saveChannel(record);
        c.o.store.saveAcceptedOpen({ shareA, channelId: record.id });
      }),
    );
    if (failed) return;
    const rt = c.track(record);
    c.send(from, accept);
    c.retransmission.arm(rt);
    c.log.info({ channel: record.id, peer: from }, 'channel proposal accepted');
  }

  onAccept(from: Address, m: OpenAccept): void {
    const c = this.c;
    const key = toHex(m.shareA);
    const w = this.#opens.get(key);
    if (!w) {
      // Our countersignature was lost: send it again.
      const rt = c.channels.withPeer(from).find((r) => r.rec.idx === 0 && Buffer.from(r.rec.shares.a).equals(m.shareA));
      // Only while version 0 is the current state: later, current.sigs[0] signs another
      // state, and the peer, which signed a later state, holds version 0 complete already.
      if (rt && rt.rec.current.state.version === 0n) c.send(from, { type: MessageType.UpdateAccept, alias: aliasOf(rt.rec.id), version: 0n, sig: rt.rec.current.sigs[0]! });
      return;
    }
    if (w.pending.context.participants[1] !== from) throw new WrongPeerError('acceptance from another peer');
    const completed = completeOpen(c.o.signer, w.pending, m);
    const gateway = w.pending.message.gateway;
    const record: ChannelRecord = gateway ? { ...completed.record, virtual: { gateway, parent: c.virtuals.parentFor(gateway).rec.id } } : completed.record;
    const reply = completed.reply;
    if (c.channels.byAlias(aliasOf(record.id))) throw new AliasCollisionError('channel alias collides with a live channel');
    const failed = c.persist(() =>
      c.o.store.atomically(() => {
        c.o.store.saveChannel(record);
        c.o.store.deletePendingOpen(key);
      }),
    );
    if (failed) return;
    if (w.timer) clearTimeout(w.timer);
    this.#opens.delete(key);
    const rt = c.track(record);
    c.send(from, reply);
    c.notify(() => w.resolve(record));
    this.opened(rt);
  }

  onReject(from: Address, m: OpenReject): void {
    const c = this.c;
    const key = toHex(m.shareA);
    const w = this.#opens.get(key);
    const peer = w?.pending.context.participants[1];
    if (!w || peer !== from || !openRejectedBy(m, peer)) return;
    if (w.timer) clearTimeout(w.timer);
    this.#opens.delete(key);
    if (c.persist(() => c.o.store.deletePendingOpen(key))) return;
    w.reject(new OpenRejectedError(Object.entries(RejectReason).find(([, v]) => v === m.reason)?.[0] ?? String(m.reason)));
  }

  /** A channel became open on this side: announce it, and fund it if it is virtual. */
  opened(rt: Runtime): void {
    const channel = rt.rec;
    this.c.log.info({ channel: channel.id, kind: channel.params.kind }, 'channel open');
    this.c.notify(() => this.c.events.emit('opened', channel));
    if (channel.virtual) this.c.virtuals.fund(rt);
  }
}
