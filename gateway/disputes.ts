import type { Agent } from '../src/client/agent.ts';
import type { Intermediary } from '../src/client/intermediary.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { isFullySigned, latestProposal } from '../src/channel/record.ts';
import { initialVirtualState } from '../src/channel/virtual.ts';
import { advanceSettlement, type ChainClient, cumulativeOf, type Holding, readDispute, registerVoucher, SettlementError, type SettleStep, type TxResult, type VirtualEvidence } from '../src/chain/index.ts';
import type { FundedVirtual } from '../src/channel/intermediary.ts';
import { PeerOnlineError } from '../src/errors.ts';
import { type Address, type Bytes32, ChannelKind } from '../src/model/types.ts';
import type { Logger } from '../src/log.ts';
import type { ChannelStorage, FactStorage } from '../src/store/types.ts';

// The gateway settles on-chain what it cannot settle off-chain, by itself. A ledger
// channel goes on-chain (a dispute) when its device has been offline for `offlineMs`
// while a virtual channel is locked in it, when anyone registers it, or when a virtual
// channel locked in it is registered (two devices resolving their channel against one
// parent). A dispute spreads to the other parent of every virtual channel the channel
// locks, since a virtual channel is released only from concluded parents. Each dispute is
// a fact in the store, advanced at every check (settle.ts: register, refute, conclude,
// resolve, release) until the chain has paid everything out; then the channel retires.
// A restart picks every dispute up from its fact, and the chain says where it stands.

export interface GatewayDisputesOptions {
  client: ChainClient;
  agent: Agent;
  intermediary: Intermediary;
  store: Pick<ChannelStorage, 'loadChannel'>;
  facts: FactStorage;
  logger: Logger;
  /** How long a device with a virtual channel open may stay offline before its channel goes on-chain (ms). */
  offlineMs: number;
  /** How often offline devices and open disputes are checked (ms). */
  checkMs: number;
  /** Runs a chain job after the gateway's others (one account, one nonce sequence). */
  serial: (job: () => Promise<void>) => void;
}

/** A dispute as the dashboard shows it. */
export interface DisputeView {
  channel: Bytes32;
  peer: Address;
  reason: string;
  since: number;
  /** The last step taken, and until when (chain time, s) a challenge period runs, if one does. */
  step: SettleStep | 'started';
  waitingUntil: number | null;
}

const DISPUTE = 'dispute:';
const OFFLINE = 'offline:';

export class GatewayDisputes {
  readonly #o: GatewayDisputesOptions;
  readonly #views = new Map<Bytes32, DisputeView>();
  /** Counters since this process started (the metrics). */
  readonly counts = { started: 0, settled: 0, steps: 0 };
  #timer: NodeJS.Timeout | null = null;
  #checking = false;

  constructor(options: GatewayDisputesOptions) {
    this.#o = options;
    const { agent, facts } = options;
    agent.on('presence', ({ peer, online }) => {
      if (online) facts.deleteFact(`${OFFLINE}${peer}`);
      else if (facts.fact(`${OFFLINE}${peer}`) === undefined) facts.setFact(`${OFFLINE}${peer}`, Date.now());
    });
    // A device whose ledger channel locks a virtual channel is watched from then on.
    agent.on('updated', ({ channel }) => {
      if (channel.params.kind === ChannelKind.Ledger && channel.current.state.outcome.locked.length > 0) agent.watchPeer(channel.peer);
    });
  }

  start(): void {
    for (const rec of this.#ledgers()) if (rec.current.state.outcome.locked.length > 0) this.#o.agent.watchPeer(rec.peer);
    for (const { key, value } of this.#o.facts.factsWithPrefix<{ reason: string; since: number }>(DISPUTE)) {
      const rec = this.#ledger(key.slice(DISPUTE.length) as Bytes32);
      // Retired before its fact went (a crash between the two): it is settled.
      if (!rec) this.#o.facts.deleteFact(key);
      else this.#views.set(rec.id, { channel: rec.id, peer: rec.peer, reason: value.reason, since: value.since, step: 'started', waitingUntil: null });
    }
    const tick = (): void => {
      this.#timer = setTimeout(() => void this.check().finally(tick), this.#o.checkMs);
      this.#timer.unref();
    };
    void this.check().finally(tick);
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
  }

  /** Whether the channel is being settled on-chain: no update of it is accepted any more. */
  has = (id: Bytes32): boolean => this.#views.has(id);

  list(): DisputeView[] {
    return [...this.#views.values()];
  }

  /** A registration seen on-chain (the watchtower's events and sweeps). */
  registered = (id: Bytes32): void => {
    const ledger = this.#ledger(id);
    if (ledger) return this.#begin(ledger, 'registered on-chain');
    const vc = this.#o.intermediary.virtualChannel(id);
    if (!vc) return;
    // A stream's payee claims off-chain (secureClaim): only its payer's channel goes on-chain,
    // and the payee's only if it is registered itself or never claims (see #settled).
    const stream = vc.params.kind === ChannelKind.Stream;
    for (const parent of this.#parentsOf(id)) {
      if (!stream || parent.peer === vc.params.participants[0]) this.#begin(parent, `virtual channel ${id} registered on-chain`);
    }
  };

  /** What the gateway holds of a ledger channel, with its evidence for each virtual channel it locks. */
  holding = (id: Bytes32): Holding | null => {
    const rec = this.#ledger(id);
    if (!rec || !isFullySigned(rec.current)) return null;
    const virtuals = new Map<string, VirtualEvidence>();
    for (const sub of rec.current.state.outcome.locked) {
      const vc = this.#o.intermediary.virtualChannel(sub.id);
      if (!vc) continue;
      // A stream resolves by the voucher its payee claimed with (else a zero one, which the payee raises); a bidirectional channel by its version 0, signed by both when it was funded.
      const signed = vc.sigs ? { state: initialVirtualState(vc.params, vc.assets, vc.balances), sigs: vc.sigs } : undefined;
      const voucher = vc.voucher ? { cumulative: vc.voucher.cumulative, signature: vc.voucher.sig } : undefined;
      virtuals.set(sub.id.toLowerCase(), { params: vc.params, signed, voucher });
    }
    return { params: rec.params, signed: rec.current, proposed: latestProposal(rec)?.state, virtuals };
  };

  /** Begins the disputes that are due and advances every open one. */
  async check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const now = Date.now();
      for (const { key, value: since } of this.#o.facts.factsWithPrefix<number>(OFFLINE)) {
        if (now - since < this.#o.offlineMs) continue;
        const peer = key.slice(OFFLINE.length) as Address;
        for (const rec of this.#ledgers().filter((c) => c.peer === peer && c.current.state.outcome.locked.length > 0)) {
          this.#begin(rec, `device offline since ${new Date(since).toISOString()} with a virtual channel open`);
        }
      }
      await Promise.all([...this.#views.keys()].map((id) => new Promise<void>((done) => this.#o.serial(() => this.#advance(id).finally(done)))));
    } finally {
      this.#checking = false;
    }
  }

  #begin(rec: ChannelRecord, reason: string): void {
    if (this.#views.has(rec.id) || this.#o.facts.fact(`${DISPUTE}${rec.id}`) !== undefined) return;
    const since = Date.now();
    this.#o.facts.setFact(`${DISPUTE}${rec.id}`, { reason, since });
    this.#views.set(rec.id, { channel: rec.id, peer: rec.peer, reason, since, step: 'started', waitingUntil: null });
    this.counts.started++;
    this.#o.logger.warn({ channel: rec.id, peer: rec.peer, reason }, 'settling a ledger channel on-chain');
    // Its virtual channels are released only from concluded parents: their other parents go
    // on-chain too, except a stream whose payer this is: its payee claims off-chain (secureClaim).
    for (const sub of rec.current.state.outcome.locked) {
      const vc = this.#o.intermediary.virtualChannel(sub.id);
      if (vc?.params.kind === ChannelKind.Stream && vc.params.participants[0] === rec.peer) continue;
      for (const parent of this.#parentsOf(sub.id)) this.#begin(parent, `virtual channel ${sub.id} is settled on-chain`);
    }
    this.#o.serial(() => this.#advance(rec.id));
  }

  async #advance(id: Bytes32): Promise<void> {
    const view = this.#views.get(id);
    const held = this.holding(id);
    if (!view || !held) return;
    try {
      const settlement = await advanceSettlement(this.#o.client, held, { onStep: (step, channel, tx) => this.#stepped(view, step, channel, tx) });
      if (settlement.status === 'waiting') {
        view.waitingUntil = Number(settlement.until);
        return;
      }
      this.#settled(id);
    } catch (err) {
      this.#o.logger.error({ channel: id, err: String(err) }, 'on-chain settlement step failed (tried again at the next check)');
    }
  }

  #stepped(view: DisputeView, step: SettleStep, channel: Bytes32, tx: TxResult): void {
    view.step = step;
    this.counts.steps++;
    this.#o.logger.info({ channel: view.channel, step, subject: channel, tx: tx.hash }, 'on-chain settlement step');
  }

  /**
   * A payee claims a stream whose payer does not answer (Intermediary.secureClaim): its
   * voucher is registered on-chain first, so that the stream resolves at no less and the
   * gateway gets back from the payer's parent what it pays the payee; the payer's parent
   * then goes on-chain. Throws, refusing the claim, if the stream resolved lower already.
   */
  secureClaim = async (vc: FundedVirtual, voucher: { cumulative: bigint; sig: Uint8Array }): Promise<void> => {
    // A payee may claim only against a payer that is gone: one that is there is asked to close, and a claim would put its channel on-chain for nothing.
    if (this.#o.facts.fact(`${OFFLINE}${vc.params.participants[0].toLowerCase()}`) === undefined) throw new PeerOnlineError(`the payer of stream ${vc.id} is online: it settles with its payee`);
    await new Promise<void>((resolve, reject) => this.#o.serial(() => this.#registerClaim(vc, voucher).then(resolve, reject)));
    for (const parent of this.#parentsOf(vc.id)) {
      if (parent.peer === vc.params.participants[0]) this.#begin(parent, `its payee claimed stream ${vc.id}: the payer does not answer`);
    }
  };

  async #registerClaim(vc: FundedVirtual, voucher: { cumulative: bigint; sig: Uint8Array }): Promise<void> {
    const { client } = this.#o;
    const registered = await readDispute(client, vc.id);
    const { timestamp } = await client.publicClient.getBlock();
    if (registered && cumulativeOf(registered) >= voucher.cumulative) return;
    if (registered && timestamp >= registered.timeout) throw new SettlementError(`stream ${vc.id} resolved on-chain at ${cumulativeOf(registered)}, below the claim`);
    const tx = await registerVoucher(client, { params: vc.params, cumulative: voucher.cumulative, signature: voucher.sig });
    const after = await readDispute(client, vc.id, tx.blockNumber);
    if (!after || cumulativeOf(after) < voucher.cumulative) throw new SettlementError(`stream ${vc.id}: the claimed voucher did not land`);
    this.counts.steps++;
    this.#o.logger.info({ vc: vc.id, cumulative: voucher.cumulative.toString(), tx: tx.hash }, 'claimed voucher registered on-chain');
  }

  /**
   * Paid out: the channel retires (before its fact goes: a crash between the two must not
   * leave a settled channel live and taking updates), and so does each virtual channel no
   * live parent locks any more.
   */
  #settled(id: Bytes32): void {
    const rec = this.#ledger(id)!;
    this.#o.agent.retireSettled(id);
    this.#views.delete(id);
    this.#o.facts.deleteFact(`${DISPUTE}${id}`);
    this.counts.settled++;
    for (const sub of rec.current.state.outcome.locked) {
      const others = this.#parentsOf(sub.id);
      if (others.length === 0) this.#o.intermediary.forget(sub.id);
      // Resolved on-chain, still locked in a parent nobody released it from off-chain (a payee that did not claim in time): on-chain there too.
      for (const parent of others) this.#begin(parent, `virtual channel ${sub.id} resolved on-chain`);
    }
    this.#o.logger.info({ channel: id, peer: rec.peer }, 'ledger channel settled on-chain: everything paid out');
  }

  #ledgers(): ChannelRecord[] {
    return this.#o.agent.channels().filter((c) => c.params.kind === ChannelKind.Ledger);
  }

  /** A live ledger channel of the gateway's. */
  #ledger(id: Bytes32): ChannelRecord | undefined {
    return this.#ledgers().find((c) => c.id === id);
  }

  /** The gateway's live ledger channels that lock virtual channel `vcId`. */
  #parentsOf(vcId: Bytes32): ChannelRecord[] {
    const id = vcId.toLowerCase();
    return this.#ledgers().filter((c) => c.current.state.outcome.locked.some((l) => l.id.toLowerCase() === id));
  }
}
