import { checkClaim, checkFunding, checkRelease, type FundedVirtual, lockDiff } from '../channel/intermediary.ts';
import { reasonOf } from '../channel/update.ts';
import { InsufficientFundsError, InvalidAllocationError, ProtocolError, UnknownChannelError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type Address, type Bytes32, ChannelKind, type Signature } from '../model/types.ts';
import type { VirtualStorage } from '../store/types.ts';
import { RejectReason, type VirtualFinal, type VirtualTerms, type VoucherClaim } from '../wire/messages.ts';
import type { Agent, Decision, UpdateContext } from './agent.ts';

// The gateway's part in virtual channels. A device asks for a virtual channel to be
// funded (or released) by proposing the matching update of its ledger channel with the
// gateway, with evidence attached. The gateway holds each such proposal and signs none
// until it holds the other device's matching one; then it signs both. Its own outcome is
// fixed by the index maps: in each parent it stands in for the other device, so across
// the two parents it gets back exactly what it locked, whatever A and B sign.

export interface IntermediaryOptions {
  /** The gateway's records of the virtual channels it funded (ChannelStore.service). */
  records: VirtualStorage;
  chain: { chainId: bigint; adjudicator: Address };
  /** How long a held request waits for its counterpart before both are refused. */
  holdTimeoutMs: number;
  logger: Logger;
  /** Whether a ledger channel is funded on-chain and may back virtual channels (default: all are). */
  isFunded?: (ledgerChannel: Bytes32) => boolean | Promise<boolean>;
  /** What each device pays, in asset 0, in the update that funds its side of a virtual channel (default 0). */
  fee?: bigint;
  /**
   * Secures a payee's claim on-chain before the gateway signs it (its voucher registered,
   * so the stream resolves at no less); throws to refuse it. Without it claims are refused:
   * off-chain alone nothing stops the payer and payee from resolving lower against the other parent.
   */
  secureClaim?: (vc: FundedVirtual, voucher: { cumulative: bigint; sig: Uint8Array }) => Promise<void>;
  /** Whether a ledger channel takes no update any more (it is being settled on-chain); checked again when a held pair is signed. */
  frozen?: (ledgerChannel: Bytes32) => boolean;
}

export type { FundedVirtual };

interface Side {
  channelId: Bytes32;
  version: bigint;
}

interface Pending {
  kind: 'fund' | 'settle';
  sides: Map<Address, Side>;
  sigs: Map<Address, Signature | null>;
  /** What both sides must describe alike: the initial outcome (fund), or the final version and balances (settle). */
  outcome?: string;
  timer: NodeJS.Timeout;
}

export class Intermediary {
  readonly #o: IntermediaryOptions;
  #agent: Agent | null = null;
  readonly #funded = new Map<Bytes32, FundedVirtual>();
  readonly #pending = new Map<string, Pending>();
  /** Held lock changes that came without evidence (a Sync carries none), refused if none follows in time. */
  readonly #bare = new Map<string, NodeJS.Timeout>();

  constructor(options: IntermediaryOptions) {
    this.#o = options;
    for (const vc of options.records.loadVirtuals<FundedVirtual>()) this.#funded.set(vc.id, vc);
  }

  /** Joins the agent whose policy this is: its held proposals come here. */
  attach(agent: Agent): void {
    this.#agent = agent;
    agent.on('held', (ctx) => void this.#onHeld(ctx));
  }

  /** Policy for updates devices propose on their ledger channels with the gateway. */
  decide = (ctx: UpdateContext): Decision => {
    const { added, removed, altered } = lockDiff(ctx.current, ctx.proposed);
    if (altered.length > 0) return false;
    if (added.length + removed.length === 0) {
      // A plain payment: fine if it takes nothing from the gateway.
      const g = ctx.channel.idx;
      return ctx.proposed.outcome.balances.every((pair, i) => pair[g] >= ctx.current.outcome.balances[i]![g]);
    }
    return added.length + removed.length === 1 && ctx.channel.params.kind === ChannelKind.Ledger ? 'hold' : false;
  };

  virtualChannels(): FundedVirtual[] {
    return [...this.#funded.values()];
  }

  virtualChannel(id: Bytes32): FundedVirtual | undefined {
    return this.#funded.get(id.toLowerCase() as Bytes32);
  }

  /** Forgets a virtual channel settled on-chain in both parents. */
  forget(id: Bytes32): void {
    this.#funded.delete(id.toLowerCase() as Bytes32);
    this.#o.records.deleteVirtual(id.toLowerCase() as Bytes32);
  }

  async #onHeld(ctx: UpdateContext): Promise<void> {
    const key = `${ctx.channel.id}:${ctx.proposed.version}`;
    clearTimeout(this.#bare.get(key));
    this.#bare.delete(key);
    if (!ctx.attachment) {
      // The device resends it with the evidence; one that never does gets a refusal, so its ledger channel is not stuck.
      const timer = setTimeout(() => {
        this.#bare.delete(key);
        this.#agent!.answerHeld(ctx.channel.id, ctx.proposed.version, false, RejectReason.InvalidTerms);
      }, this.#o.holdTimeoutMs);
      timer.unref();
      this.#bare.set(key, timer);
      return;
    }
    try {
      const { added, removed } = lockDiff(ctx.current, ctx.proposed);
      if (added[0] && ctx.attachment && 'fund' in ctx.attachment) await this.#fundSide(ctx, added[0], ctx.attachment.fund);
      else if (removed[0] && ctx.attachment && 'settle' in ctx.attachment) this.#settleSide(ctx, removed[0], ctx.attachment.settle);
      else if (removed[0] && ctx.attachment && 'claim' in ctx.attachment) await this.#claimSide(ctx, removed[0], ctx.attachment.claim);
      else throw new InvalidAllocationError('the evidence does not match the locks the update changes');
    } catch (err) {
      // Whatever a device sent, the gateway refuses it and carries on.
      const known = err instanceof ProtocolError;
      this.#o.logger[known ? 'warn' : 'error']({ channel: ctx.channel.id, err: String(err) }, 'virtual-channel request refused');
      this.#agent!.answerHeld(ctx.channel.id, ctx.proposed.version, false, known ? reasonOf(err) : RejectReason.InvalidTerms);
    }
  }

  async #fundSide(ctx: UpdateContext, vcId: Bytes32, terms: VirtualTerms): Promise<void> {
    const device = ctx.channel.peer;
    const other = terms.peer;
    const { params, match } = checkFunding(ctx, vcId, terms, this.#o.chain, this.#o.fee ?? 0n);
    if (!this.#ledgerWith(other)) throw new UnknownChannelError('no open ledger channel with the other participant');
    if (this.#o.isFunded && !(await this.#o.isFunded(ctx.channel.id))) throw new InsufficientFundsError('ledger channel not funded on-chain');
    // The read took a while: the other side may have closed meanwhile.
    if (!this.#ledgerWith(other)) throw new UnknownChannelError('no open ledger channel with the other participant');
    const key = `fund:${vcId}`;
    const pending = this.#hold(key, 'fund', ctx, device);
    // Both requests must describe the same initial state (go-perun's matchFundingProposal).
    if (pending.outcome !== undefined && pending.outcome !== match) {
      this.#o.logger.warn({ vc: vcId }, 'virtual-channel requests describe different initial states');
      return this.#complete(key, false);
    }
    pending.outcome = match;
    pending.sigs.set(device, terms.sig);
    if (pending.sides.size < 2) return;
    if ([...pending.sides.values()].some((side) => this.#o.frozen?.(side.channelId))) return this.#complete(key, false);
    const [p0, p1] = params.participants;
    const [s0, s1] = [pending.sigs.get(p0) ?? null, pending.sigs.get(p1) ?? null];
    this.#funded.set(vcId, { id: vcId, params, assets: ctx.current.outcome.assets, balances: terms.balances, sigs: s0 && s1 ? [s0, s1] : null });
    this.#o.records.saveVirtual(vcId, this.#funded.get(vcId));
    this.#complete(key, true);
    this.#o.logger.info({ vc: vcId, participants: params.participants }, 'virtual channel funded');
  }

  #settleSide(ctx: UpdateContext, vcId: Bytes32, final: VirtualFinal): void {
    const { match } = checkRelease(ctx, this.#funded.get(vcId), final);
    const key = `settle:${vcId}`;
    const pending = this.#hold(key, 'settle', ctx, ctx.channel.peer);
    if (pending.outcome && pending.outcome !== match) {
      this.#complete(key, false);
      return;
    }
    pending.outcome = match;
    if (pending.sides.size < 2) return;
    this.#complete(key, true);
    this.#funded.delete(vcId);
    this.#o.records.deleteVirtual(vcId);
    this.#o.logger.info({ vc: vcId }, 'virtual channel settled');
  }

  /** A payee's claim: checked, secured on-chain, then signed alone (the payer does not answer). */
  async #claimSide(ctx: UpdateContext, vcId: Bytes32, claim: VoucherClaim): Promise<void> {
    const vc = this.#funded.get(vcId);
    checkClaim(ctx, vc, claim);
    if (!this.#o.secureClaim) throw new InsufficientFundsError('this gateway takes no claims: it watches no chain');
    if (this.#o.frozen?.(ctx.channel.id)) throw new InsufficientFundsError('ledger channel is being settled on-chain');
    const voucher = { cumulative: claim.cumulative, sig: claim.sig };
    await this.#o.secureClaim(vc!, voucher);
    if (this.#o.frozen?.(ctx.channel.id)) throw new InsufficientFundsError('ledger channel is being settled on-chain');
    // Kept: the payer's parent still locks the stream, and is settled on-chain with this voucher.
    if (!vc!.voucher || vc!.voucher.cumulative < voucher.cumulative) {
      vc!.voucher = voucher;
      this.#o.records.saveVirtual(vcId, vc);
    }
    this.#agent!.answerHeld(ctx.channel.id, ctx.proposed.version, true);
    this.#o.logger.info({ vc: vcId, cumulative: claim.cumulative.toString() }, 'stream claimed by its payee');
  }

  #hold(key: string, kind: Pending['kind'], ctx: UpdateContext, device: Address): Pending {
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = { kind, sides: new Map(), sigs: new Map(), timer: setTimeout(() => this.#complete(key, false), this.#o.holdTimeoutMs) };
      pending.timer.unref();
      this.#pending.set(key, pending);
    }
    pending.sides.set(device, { channelId: ctx.channel.id, version: ctx.proposed.version });
    return pending;
  }

  /** Signs both held proposals, or refuses both. */
  #complete(key: string, accept: boolean): void {
    const pending = this.#pending.get(key);
    if (!pending) return;
    clearTimeout(pending.timer);
    this.#pending.delete(key);
    // A side that went on-chain while the pair was held signs nothing: its other parent would not follow it there.
    if (accept && [...pending.sides.values()].some((side) => this.#o.frozen?.(side.channelId))) accept = false;
    for (const side of pending.sides.values()) this.#agent!.answerHeld(side.channelId, side.version, accept, RejectReason.InvalidTerms);
  }

  #ledgerWith(device: Address): boolean {
    return this.#agent!.channelsWith(device).some((c) => c.params.kind === ChannelKind.Ledger && c.phase === 'open');
  }
}
