import type { Agent, Decision, UpdateContext } from '../src/client/agent.ts';
import { reasonOf } from '../src/channel/update.ts';
import {
  InsufficientFundsError,
  InvalidAllocationError,
  InvalidSignatureError,
  ProtocolError,
  UnknownChannelError,
  WrongPeerError,
} from '../src/errors.ts';
import { feeOutcome, initialVirtualState, lockOutcome, unlockOutcome, virtualParams } from '../src/channel/virtual.ts';
import { recoverAddress } from '../src/crypto/verify.ts';
import { domainSeparator, outcomeHash, stateDigest, toHex } from '../src/model/hash.ts';
import { type Address, type Bytes32, ChannelKind, type Params, type Signature, type State } from '../src/model/types.ts';
import type { Logger } from '../src/log.ts';
import type { ChannelStore } from '../src/store/store.ts';
import { RejectReason, type VirtualFinal, type VirtualTerms } from '../src/wire/messages.ts';

// The gateway's part in virtual channels. A device asks for a virtual channel to be
// funded (or released) by proposing the matching update of its ledger channel with the
// gateway, with evidence attached. The gateway holds each such proposal and signs none
// until it holds the other device's matching one; then it signs both. Its own outcome is
// fixed by the index maps: in each parent it stands in for the other device, so across
// the two parents it gets back exactly what it locked, whatever A and B sign.

export interface IntermediaryOptions {
  store: ChannelStore;
  chain: { chainId: bigint; adjudicator: Address };
  /** How long a held request waits for its counterpart before both are refused. */
  holdTimeoutMs: number;
  logger: Logger;
  /** Whether a ledger channel is funded on-chain and may back virtual channels (default: all are). */
  isFunded?: (ledgerChannel: Bytes32) => boolean | Promise<boolean>;
  /** What each device pays, in asset 0, in the update that funds its side of a virtual channel (default 0). */
  fee?: bigint;
}

/** What the gateway keeps about a virtual channel it funded. */
export interface FundedVirtual {
  id: Bytes32;
  params: Params;
  assets: readonly Address[];
  balances: readonly (readonly [bigint, bigint])[];
  /** Both signatures on version 0 (null for a stream, which vouchers resolve). */
  sigs: readonly [Signature, Signature] | null;
}

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
    for (const vc of options.store.loadVirtuals<FundedVirtual>()) this.#funded.set(vc.id, vc);
  }

  /** Joins the agent whose policy this is: its held proposals come here. */
  attach(agent: Agent): void {
    this.#agent = agent;
    agent.on('held', (ctx) => void this.#onHeld(ctx));
  }

  /** Policy for updates devices propose on their ledger channels with the gateway. */
  decide = (ctx: UpdateContext): Decision => {
    const { added, removed } = lockDiff(ctx.current, ctx.proposed);
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

  async #onHeld(ctx: UpdateContext): Promise<void> {
    const key = `${ctx.channel.id}:${ctx.proposed.version}`;
    clearTimeout(this.#bare.get(key));
    this.#bare.delete(key);
    if (!ctx.attachment) {
      // The device resends it with the evidence; one that never does gets a refusal, so its ledger channel is not stuck.
      const timer = setTimeout(() => {
        this.#bare.delete(key);
        this.#agent!.release(ctx.channel.id, ctx.proposed.version, false, RejectReason.InvalidTerms);
      }, this.#o.holdTimeoutMs);
      timer.unref();
      this.#bare.set(key, timer);
      return;
    }
    try {
      const { added, removed } = lockDiff(ctx.current, ctx.proposed);
      if (added[0] && ctx.attachment && 'fund' in ctx.attachment) await this.#fundSide(ctx, added[0], ctx.attachment.fund);
      else if (removed[0] && ctx.attachment && 'settle' in ctx.attachment) this.#settleSide(ctx, removed[0], ctx.attachment.settle);
    } catch (err) {
      // Whatever a device sent, the gateway refuses it and carries on.
      const known = err instanceof ProtocolError;
      this.#o.logger[known ? 'warn' : 'error']({ channel: ctx.channel.id, err: String(err) }, 'virtual-channel request refused');
      this.#agent!.release(ctx.channel.id, ctx.proposed.version, false, known ? reasonOf(err) : RejectReason.InvalidTerms);
    }
  }

  async #fundSide(ctx: UpdateContext, vcId: Bytes32, terms: VirtualTerms): Promise<void> {
    const device = ctx.channel.peer;
    const params = virtualParams(device, terms, this.#o.chain);
    const v0 = initialVirtualState(params, ctx.current.outcome.assets, terms.balances);
    if (v0.channelId !== vcId) throw new InvalidAllocationError('locked id is not the virtual channel described');
    const other = terms.peer;
    if (other === device) throw new WrongPeerError('a virtual channel needs two different participants');
    if (!this.#ledgerWith(other)) throw new UnknownChannelError('no open ledger channel with the other participant');
    if (terms.sig === null ? params.kind !== ChannelKind.Stream : recoverAddress(terms.sig, stateDigest(domainSeparator(params), v0)) !== device) {
      throw new InvalidSignatureError('missing or bad signature on the virtual channel');
    }
    const locked = lockOutcome(ctx.current.outcome, ctx.channel.params.participants, { id: vcId, participants: params.participants, balances: terms.balances });
    const expected = feeOutcome(locked, ctx.channel.idx === 0 ? 1 : 0, this.#o.fee ?? 0n);
    if (outcomeHash(expected) !== outcomeHash(ctx.proposed.outcome)) throw new InvalidAllocationError('parent update does not lock exactly the virtual channel funds and pay the fee');
    if (this.#o.isFunded && !(await this.#o.isFunded(ctx.channel.id))) throw new InsufficientFundsError('ledger channel not funded on-chain');
    // The read took a while: the other side may have closed meanwhile.
    if (!this.#ledgerWith(other)) throw new UnknownChannelError('no open ledger channel with the other participant');
    const key = `fund:${vcId}`;
    const pending = this.#hold(key, 'fund', ctx, device);
    // The id covers neither balances nor assets: two colluding devices could describe
    // different initial states, and the gateway would lock different amounts in the two
    // parents. Both requests must describe the same one (go-perun's matchFundingProposal).
    const initial = outcomeHash(v0.outcome);
    if (pending.outcome !== undefined && pending.outcome !== initial) {
      this.#o.logger.warn({ vc: vcId }, 'virtual-channel requests describe different initial states');
      return this.#complete(key, false);
    }
    pending.outcome = initial;
    pending.sigs.set(device, terms.sig);
    if (pending.sides.size < 2) return;
    const [p0, p1] = params.participants;
    const [s0, s1] = [pending.sigs.get(p0) ?? null, pending.sigs.get(p1) ?? null];
    this.#funded.set(vcId, { id: vcId, params, assets: ctx.current.outcome.assets, balances: terms.balances, sigs: s0 && s1 ? [s0, s1] : null });
    this.#o.store.saveVirtual(vcId, this.#funded.get(vcId));
    this.#complete(key, true);
    this.#o.logger.info({ vc: vcId, participants: params.participants }, 'virtual channel funded');
  }

  #settleSide(ctx: UpdateContext, vcId: Bytes32, final: VirtualFinal): void {
    const vc = this.#funded.get(vcId);
    if (!vc || toHex(final.id) !== vcId) throw new UnknownChannelError('unknown virtual channel');
    const state: State = { channelId: vcId, version: final.version, outcome: { assets: vc.assets, balances: final.balances, locked: [] }, isFinal: true };
    const digest = stateDigest(domainSeparator(vc.params), state);
    if (recoverAddress(final.sigs[0], digest) !== vc.params.participants[0] || recoverAddress(final.sigs[1], digest) !== vc.params.participants[1]) {
      throw new InvalidSignatureError('final state not signed by both participants');
    }
    const expected = unlockOutcome(ctx.current.outcome, vcId, final.balances);
    if (outcomeHash(expected) !== outcomeHash(ctx.proposed.outcome)) throw new InvalidAllocationError('parent update does not release per the final state');
    const key = `settle:${vcId}`;
    const pending = this.#hold(key, 'settle', ctx, ctx.channel.peer);
    const outcome = outcomeHash(state.outcome) + final.version;
    if (pending.outcome && pending.outcome !== outcome) {
      this.#complete(key, false);
      return;
    }
    pending.outcome = outcome;
    if (pending.sides.size < 2) return;
    this.#complete(key, true);
    this.#funded.delete(vcId);
    this.#o.store.deleteVirtual(vcId);
    this.#o.logger.info({ vc: vcId }, 'virtual channel settled');
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
    for (const side of pending.sides.values()) this.#agent!.release(side.channelId, side.version, accept, RejectReason.InvalidTerms);
  }

  #ledgerWith(device: Address): boolean {
    return this.#agent!.channelsWith(device).some((c) => c.params.kind === ChannelKind.Ledger && c.phase === 'open');
  }
}

function lockDiff(current: State, proposed: State): { added: Bytes32[]; removed: Bytes32[] } {
  const before = new Set(current.outcome.locked.map((l) => l.id));
  const after = new Set(proposed.outcome.locked.map((l) => l.id));
  return { added: [...after].filter((id) => !before.has(id)), removed: [...before].filter((id) => !after.has(id)) };
}
