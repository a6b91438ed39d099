import { aliasKey } from '../channel/record.ts';
import { makeSync, receiveSync } from '../channel/sync.ts';
import { UnknownChannelError, WrongPeerError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import { decodeMessage } from '../wire/codec.ts';
import { type Message, MessageType, type Sync } from '../wire/messages.ts';
import type { Core } from './core.ts';
import type { Runtime } from './runtime.ts';

/**
 * Inbound frames: decoded within the size limit, matched to a live channel of the peer
 * that sent them, and handed to the module that owns the message type, in the order they
 * came. Whatever is refused is announced (`rejected`) and changes nothing.
 */
export class Dispatch {
  constructor(private readonly c: Core) {}

  receive(from: Address, frame: Uint8Array): void {
    // A stopped agent acts on nothing: its memory may be ahead of its store.
    if (this.c.stopped) return;
    let msg: Message;
    try {
      msg = decodeMessage(frame, this.c.o.maxMessageBytes);
    } catch (err) {
      return this.c.refused(from, err);
    }
    this.#dispatch(from, msg).catch((err) => this.c.refused(from, err));
  }

  async #dispatch(from: Address, msg: Message): Promise<void> {
    const c = this.c;
    switch (msg.type) {
      case MessageType.OpenPropose:
        return c.opening.onPropose(from, msg);
      case MessageType.OpenAccept:
        return c.opening.onAccept(from, msg);
      case MessageType.OpenReject:
        return c.opening.onReject(from, msg);
    }
    if (msg.type === MessageType.Sync && !c.channels.byAlias(msg.alias)) return this.#onRetiredSync(from, msg);
    const rt = this.#fromPeer(from, msg.alias);
    // Messages of a channel are handled in the order they came, an acceptance checked late included.
    while (rt.verifying) await rt.verifying;
    switch (msg.type) {
      case MessageType.Update:
        return c.updates.onUpdate(rt, msg);
      case MessageType.UpdateAccept:
        return c.updates.onAccept(rt, msg);
      case MessageType.UpdateReject:
        return c.updates.onReject(rt, msg);
      case MessageType.Sync:
        return c.updates.onSync(rt, msg);
      case MessageType.FundRequest:
        return c.updates.onUpdate(rt, { ...msg, type: MessageType.Update }, { fund: msg.vc });
      case MessageType.SettleRequest:
        return c.updates.onUpdate(rt, { ...msg, type: MessageType.Update }, { settle: msg.vc });
      case MessageType.ClaimRequest:
        return c.updates.onUpdate(rt, { ...msg, type: MessageType.Update }, { claim: msg.vc });
      case MessageType.Voucher:
        return c.streams.onVoucher(rt, msg);
      case MessageType.VoucherAck:
        return c.streams.onVoucherAck(rt, msg);
      case MessageType.CloseRequest:
        return c.streams.onCloseRequest(rt, msg);
    }
  }

  #fromPeer(from: Address, alias: Uint8Array): Runtime {
    const rt = this.c.channels.byAlias(alias);
    if (!rt) throw new UnknownChannelError(`no channel with alias ${aliasKey(alias)}`);
    if (rt.rec.peer !== from) throw new WrongPeerError(`message for channel ${rt.rec.id} from ${from}`);
    return rt;
  }

  /**
   * A peer resynchronising a channel this side retired (it missed the last acceptance):
   * the final state both signed, from the archive. Nothing else of a retired channel is
   * answered, and nothing changes here.
   */
  #onRetiredSync(from: Address, msg: Sync): void {
    const c = this.c;
    const rec = c.o.store.retiredByAlias(aliasKey(msg.alias));
    if (!rec || rec.peer !== from) throw new UnknownChannelError(`no channel with alias ${aliasKey(msg.alias)}`);
    if (rec.phase === 'opening') {
      // The proposer completed the open after this side let it expire (its countersignature
      // was lost meanwhile): with both signatures on version 0, the channel is live after all.
      const result = receiveSync(rec, c.o.signer, msg);
      if (result.record?.phase !== 'open') return;
      const rt = c.track(result.record);
      c.commit(rt, result.record);
      c.opening.opened(rt);
      return;
    }
    const sync = rec.phase === 'final' ? makeSync(rec) : null;
    if (sync) c.send(from, sync);
  }
}
