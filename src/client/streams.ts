import { signedByPeer } from '../channel/control.ts';
import { aliasOf } from '../channel/record.ts';
import { receiveVoucher, signVoucher, voucherMessage } from '../channel/virtual.ts';
import { ChannelClosedError, InvalidAllocationError, WrongPeerError } from '../errors.ts';
import { type Bytes32, ChannelKind } from '../model/types.ts';
import { type CloseRequest, MessageType, type Voucher, type VoucherAck } from '../wire/messages.ts';
import type { Core } from './core.ts';
import type { Runtime } from './runtime.ts';

/**
 * Stream channels: the payer signs vouchers (one message each, no reply) and keeps within
 * a window of what the payee acknowledged; the payee keeps the highest, stores one now
 * and then (group commit), acknowledges once per turn, and asks the payer to close.
 */
export class Streams {
  constructor(private readonly c: Core) {}

  /** Payer: pays `amount` more (the facade has checked the agent is live). Returns the new cumulative total. */
  pay(rt: Runtime, amount: bigint): bigint {
    const c = this.c;
    if (!c.virtuals.isFunded(rt.rec.id)) throw new ChannelClosedError('virtual channel is not funded yet');
    const { record, message } = signVoucher(rt.rec, c.o.signer, (rt.rec.voucher?.cumulative ?? 0n) + amount);
    rt.active = Date.now();
    // Losing a voucher can only make this side pay less: no fsync needed before sending.
    c.commit(rt, record, false);
    c.send(rt.rec.peer, message);
    return record.voucher!.cumulative;
  }

  /** Payer: what the payee has not acknowledged receiving yet. */
  unacked(rt: Runtime): bigint {
    return (rt.rec.voucher?.cumulative ?? 0n) - rt.voucherAcked;
  }

  /** Payer: resolves once at most `maxUnacked` is unacknowledged (see Agent.streamWindow). */
  async window(id: Bytes32, maxUnacked: bigint): Promise<void> {
    this.c.assertLive();
    const rt = this.c.runtime(id);
    if (this.unacked(rt) <= maxUnacked) return;
    return new Promise((resolve, reject) => {
      rt.windowWaiters.push({ maxUnacked, resolve, reject });
      this.#armWindowRetry(rt, this.c.timing.retransmitMs);
    });
  }

  onVoucher(rt: Runtime, msg: Voucher): void {
    const c = this.c;
    const record = receiveVoucher(rt.rec, msg, c.o.signer.publicKey);
    if (rt.rec.idx === 0) {
      // The payer takes back its own voucher, which the payee shows on a resync (see Updates.onSync):
      // losing it again only makes this side pay less, so no fsync.
      if (record) c.commit(rt, record, false);
      return;
    }
    this.#ackVouchers(rt);
    if (!record) return;
    const cumulative = record.voucher!.cumulative;
    rt.active = Date.now();
    // Group commit: a voucher is written (and fsynced) once the amount since the last
    // written one reaches voucherDurableEvery; a crash loses less than that, never more.
    if (cumulative - rt.durableVoucher >= c.o.voucherDurableEvery) {
      c.commit(rt, record);
      rt.durableVoucher = cumulative;
    } else {
      c.keep(rt, record);
    }
    const channel = rt.rec;
    c.notify(() => c.events.emit('voucher', { channel, cumulative }));
  }

  /**
   * Payee: one acknowledgement per turn of the event loop, of the highest voucher held by
   * then, however many arrived (a repeat too: the payer may have lost one).
   */
  #ackVouchers(rt: Runtime): void {
    if (rt.ackDue) return;
    rt.ackDue = true;
    setImmediate(() => {
      rt.ackDue = false;
      const cumulative = rt.rec.voucher?.cumulative;
      if (cumulative !== undefined) this.c.send(rt.rec.peer, { type: MessageType.VoucherAck, alias: aliasOf(rt.rec.id), cumulative });
    });
  }

  /** Payer: the payee received vouchers up to `cumulative`. */
  onVoucherAck(rt: Runtime, msg: VoucherAck): void {
    if (rt.rec.params.kind !== ChannelKind.Stream || rt.rec.idx !== 0) throw new WrongPeerError('voucher acknowledgements go to the payer of a stream channel');
    if (msg.cumulative > (rt.rec.voucher?.cumulative ?? 0n)) throw new InvalidAllocationError('acknowledges more than was paid');
    if (msg.cumulative <= rt.voucherAcked) return;
    rt.voucherAcked = msg.cumulative;
    const unacked = this.unacked(rt);
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

  /** Payer: the payee asks it to close the stream at the highest voucher it holds. */
  async onCloseRequest(rt: Runtime, msg: CloseRequest): Promise<void> {
    // Once: repeats (the payee asks at each sweep, or a flood of replays) find the close under way.
    if (rt.rec.params.kind !== ChannelKind.Stream || rt.rec.idx !== 0 || rt.rec.phase !== 'open' || rt.inflight || rt.queue.length > 0) return;
    // A request older than the last voucher (a replay) is spent: the stream went on since.
    if (msg.cumulative >= (rt.rec.voucher?.cumulative ?? 0n) && signedByPeer(rt.rec, msg)) await this.c.virtuals.settle(rt.rec.id);
  }

  /** While payers wait for acknowledgements: the latest voucher again, backing off. */
  #armWindowRetry(rt: Runtime, backoff: number): void {
    const c = this.c;
    if (rt.windowRetry || c.stopped) return;
    rt.windowRetry = setTimeout(() => {
      rt.windowRetry = null;
      const voucher = voucherMessage(rt.rec);
      if (rt.windowWaiters.length === 0 || !voucher) return;
      c.send(rt.rec.peer, voucher);
      this.#armWindowRetry(rt, c.doubled(backoff));
    }, backoff);
    rt.windowRetry.unref();
  }
}
