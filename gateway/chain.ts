import type { Agent } from '../src/client/agent.ts';
import type { Intermediary } from '../src/client/intermediary.ts';
import { GatewayDisputes } from './disputes.ts';
import { DEFAULT_LIMITS } from './admission.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { isFullySigned } from '../src/channel/record.ts';
import { approveDeposits, type ChainClient, cooperativeClose, deposit, nudgePending, resultOf, type PendingTx, readHoldings, startWatchtower, watchAdjudicator, type Watcher } from '../src/chain/index.ts';
import { totals } from '../src/model/allocation.ts';
import { depositsCover, sideCovered } from '../src/model/holdings.ts';
import { type Address, type Bytes32, ChannelKind, NATIVE_ASSET } from '../src/model/types.ts';
import type { Logger } from '../src/log.ts';
import type { ChannelStorage, FactStorage } from '../src/store/types.ts';

// The gateway's on-chain duties for its ledger channels: deposit its own side once the
// device's side is on-chain at confirmation depth (so a key that deposits nothing locks
// none of the gateway's money), abandon a channel the device does not fund in time, learn
// when both sides are in (only funded channels back virtual channels), and close a channel
// on-chain once both signed its final state. Each duty is remembered in the store, so a
// restart neither repeats nor forgets one.

/** How deep a deposit or a registration must be to count, unless configured. */
export const DEFAULT_CONFIRMATIONS = 1;

export interface GatewayChainOptions {
  client: ChainClient;
  agent: Agent;
  store: Pick<ChannelStorage, 'loadChannel'>;
  /** The facts of its duties (ChannelStore.service). */
  facts: FactStorage;
  logger: Logger;
  /** How often unfunded channels are checked (ms). */
  pollMs?: number;
  /** Registrations are answered, and deposits counted, once this many blocks deep. */
  confirmations?: number;
  /** How long a device has to deposit its side after the open before the channel is abandoned (ms). */
  fundingTimeoutMs?: number;
  /** How often the chain is asked for new deposits (ms): a device's deposit is answered by the gateway's within about this. */
  eventPollMs?: number;
  intermediary: Intermediary;
  /** For how long after a channel is first seen funded its deposits are read again, in case a re-org removes them (ms, default 10 min). */
  recheckMs?: number;
  /** The first delay before a failed cooperative close is sent again (ms, default 5 s; it doubles). */
  retryMs?: number;
  /** How long a device with a virtual channel open may stay offline before the gateway settles on-chain (ms). */
  offlineMs?: number;
  /** How often registrations are read directly and disputes advanced (ms, default 60 s). */
  sweepMs?: number;
}

/** The gateway's own deposit into a ledger channel, from before it is sent until it counts: every broadcast version. */
interface OwnDeposit {
  txs: (PendingTx & { asset: Address })[];
}

/** The nonces of the gateway's own deposits, which its chain duties resume themselves (see #recoverDeposit). */
export function depositNonces(facts: FactStorage): Set<number> {
  return new Set(facts.factsWithPrefix<OwnDeposit | true>('deposit:').flatMap(({ value }) => (value === true ? [] : value.txs.map((t) => t.nonce))));
}

/** A device offline this long with a virtual channel open: the gateway goes on-chain. */
export const DEFAULT_OFFLINE_MS = 60 * 60_000;


export class GatewayChain {
  readonly #o: GatewayChainOptions;
  readonly #funded = new Set<Bytes32>();
  #rechecked = 0;
  #closesRechecked = 0;
  /** Conclusions a re-org dropped, sent again: when each may be sent once more. */
  readonly #reclosing = new Map<Bytes32, { at: number; delayMs: number }>();
  /** When each channel was last seen funded, while that is recent enough for a re-org to undo it (see #recheckFunded). */
  readonly #fundedAt = new Map<Bytes32, number>();
  /** Channels with a close job queued or running. */
  readonly #closing = new Set<Bytes32>();
  /** When each final channel's close is sent again, and the delay after that. */
  readonly #closeRetries = new Map<Bytes32, { at: number; delayMs: number }>();
  /** Channels whose own deposit this process is sending or recovering now, or has queued that for. */
  readonly #depositing = new Set<Bytes32>();
  /** Channels with a #recoverDeposit job queued or running. */
  readonly #recovering = new Set<Bytes32>();
  /** Channels whose deposit intention #recoverDeposit trimmed to what landed: #depositOwnSide completes it. */
  readonly #redeposit = new Set<Bytes32>();
  /** The last deposit read of each channel not yet funded (see #check). */
  readonly #checks = new Map<Bytes32, { at: number; pending: boolean; done: Promise<void> }>();
  #timer: NodeJS.Timeout | null = null;
  #watchtower: Watcher | null = null;
  #deposits: Watcher | null = null;
  /** Stale registrations answered since this process started (the metrics). */
  readonly disputes = { refuted: 0 };
  /** The ledger channels the gateway settles on-chain. */
  readonly settlements: GatewayDisputes;
  /** Transactions go out one at a time: one account, one nonce sequence. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: GatewayChainOptions) {
    this.#o = options;
    this.settlements = new GatewayDisputes({
      client: options.client,
      agent: options.agent,
      intermediary: options.intermediary,
      store: options.store,
      facts: options.facts,
      logger: options.logger.child({ part: 'disputes' }),
      offlineMs: options.offlineMs ?? DEFAULT_OFFLINE_MS,
      checkMs: options.sweepMs ?? 60_000,
      serial: (job) => this.#serial(job),
    });
    options.agent.on('opened', (rec) => this.#opened(rec));
    options.agent.on('final', (rec) => this.#queueClose(rec));
    options.agent.on('retired', (rec) => this.#forget(rec.id));
  }

  /**
   * Catches up with duties a restart interrupted, polls unfunded channels, and watches
   * the chain: a device that registers an older state of its ledger channel is refuted
   * with the latest one both signed.
   */
  async start(): Promise<void> {
    this.#watchtower = await startWatchtower(this.#o.client, {
      confirmations: this.#o.confirmations ?? DEFAULT_CONFIRMATIONS,
      latest: (id) => {
        const rec = this.#ledger(id);
        return rec && isFullySigned(rec.current) ? { params: rec.params, signed: rec.current } : null;
      },
      // Its ledger channels and the virtual channels it funds are checked at start too: a registration made while it was down is answered.
      channels: () => [...this.#ledgerChannels().map((c) => c.id), ...this.#o.intermediary.virtualChannels().map((vc) => vc.id)],
      // One read per channel: now and then is enough beside the events (a period lasts an hour or more).
      sweepIntervalMs: this.#o.sweepMs ?? 60_000,
      // A registration of one of its channels makes it a dispute, which the gateway settles on-chain (disputes.ts).
      onRegistered: (id) => this.settlements.registered(id),
      onResponse: (r) => {
        this.disputes.refuted++;
        this.#o.logger.warn({ channel: r.channelId, version: r.answered.version.toString() }, 'refuted an old registration');
      },
      onError: (err) => this.#o.logger.error({ err: String(err) }, 'watchtower'),
    });
    // A device's deposit is answered at once, not at the next poll of all unfunded channels.
    this.#deposits = await watchAdjudicator(this.#o.client, {
      confirmations: this.#o.confirmations ?? DEFAULT_CONFIRMATIONS,
      pollIntervalMs: this.#o.eventPollMs ?? 1000,
      onEvent: (event) => {
        if (event.eventName !== 'Deposited') return;
        const rec = this.#ledgerChannels().find((c) => c.id === event.args.channelId);
        if (rec) void this.#check(rec);
      },
      // Blocks it had read were replaced: the deposits and conclusions of late are read again at the next poll.
      onReorg: (from) => {
        this.#o.logger.warn({ fromBlock: from.toString() }, 'chain re-org: reading deposits and conclusions again');
        this.#rechecked = 0;
        this.#closesRechecked = 0;
      },
      onError: (err) => this.#o.logger.warn({ err: String(err) }, 'reading deposits failed'),
    });
    this.settlements.start();
    for (const rec of this.#ledgerChannels()) {
      if (rec.phase === 'open') this.#opened(rec);
      if (rec.phase === 'final') this.#queueClose(rec);
    }
    const poll = async (): Promise<void> => {
      await this.#refresh().catch((err) => this.#o.logger.warn({ err: String(err) }, 'reading holdings failed'));
      this.#timer = setTimeout(() => void poll(), this.#o.pollMs ?? 500);
      this.#timer.unref();
    };
    void poll();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.settlements.stop();
    await this.#watchtower?.stop();
    await this.#deposits?.stop();
  }

  /** Resolves once every transaction queued so far is done. */
  idle(): Promise<unknown> {
    return this.#queue;
  }

  #serial(job: () => Promise<void>): void {
    this.#queue = this.#queue.then(job).catch((err) => this.#o.logger.error({ err: String(err) }, 'chain duty failed'));
  }

  /** Whether the channel's deposits on-chain cover its initial outcome. */
  isFunded = (id: Bytes32): boolean => this.#funded.has(id);

  /** Whether the device's side is in: the gateway's own deposit followed it, or both are in. */
  deviceFunded = (id: Bytes32): boolean => this.#funded.has(id) || this.#o.facts.fact(`deposit:${id}`) !== undefined;

  #ledgerChannels(): ChannelRecord[] {
    return this.#o.agent.channels().filter((c) => c.params.kind === ChannelKind.Ledger);
  }

  /** One of the gateway's ledger channels, live or retired. */
  #ledger(id: Bytes32): ChannelRecord | undefined {
    const rec = this.#o.store.loadChannel(id);
    return rec?.params.kind === ChannelKind.Ledger ? rec : undefined;
  }

  /** A retired channel needs no duty any more: what was kept for it goes. */
  #forget(id: Bytes32): void {
    this.#funded.delete(id);
    this.#fundedAt.delete(id);
    this.#checks.delete(id);
    this.#closeRetries.delete(id);
    this.#o.facts.deleteFact(`deposit:${id}`);
    this.#o.facts.deleteFact(`funded:${id}`);
    this.#o.facts.deleteFact(`closed:${id}`);
    this.#o.facts.deleteFact(`opened:${id}`);
  }

  /** A ledger channel is open: from now on the device has fundingTimeoutMs to deposit (kept across restarts). */
  #opened(rec: ChannelRecord): void {
    if (rec.params.kind !== ChannelKind.Ledger || this.#o.facts.fact(`opened:${rec.id}`) !== undefined) return;
    this.#o.facts.setFact(`opened:${rec.id}`, Date.now());
  }

  /**
   * Like isFunded, but reads the chain now when the last poll has not seen the deposits
   * yet: a device that watched them arrive itself may ask before the next poll.
   */
  checkFunded = async (id: Bytes32, maxAgeMs = 0): Promise<boolean> => {
    if (this.#funded.has(id)) return true;
    const rec = this.#ledger(id);
    if (!rec) return false;
    const shared = this.#checks.get(id)?.pending ?? false;
    await this.#check(rec, maxAgeMs);
    // A read already under way may have begun before the last deposit was mined: when it
    // says no and a fresh answer was asked for, one more read decides.
    if (shared && maxAgeMs === 0 && !this.#funded.has(id)) await this.#check(rec, 0);
    return this.#funded.has(id);
  };

  async #refresh(): Promise<void> {
    this.#retryCloses();
    await this.#recheckFunded();
    await this.#recheckClosed();
    const unfunded = this.#ledgerChannels().filter((c) => !this.#funded.has(c.id) && c.phase === 'open');
    if (unfunded.length === 0) return;
    const block = await this.#confirmedBlock();
    for (const rec of unfunded) await this.#check(rec, 0, block);
  }

  /**
   * Deposits counted at confirmation depth can still be re-orged away by a deeper fork.
   * For `recheckMs` after it was first seen funded (default 10 min; the time is a fact, so
   * a restart does not read every channel again), a channel's deposits
   * are read again at each poll; one they no longer cover is unfunded again: it takes no
   * payment and backs no virtual channel until the next poll sees it covered (its own
   * deposit is sent again by #recoverDeposit).
   */
  async #recheckFunded(): Promise<void> {
    const window = this.#o.recheckMs ?? 600_000;
    const now = Date.now();
    // Every few seconds is enough: a fork is seen by the next read either way.
    if (now - this.#rechecked < Math.min(10_000, window / 10)) return;
    this.#rechecked = now;
    const recent = [...this.#fundedAt].filter(([, at]) => now - at < window).map(([id]) => id);
    for (const [id, at] of this.#fundedAt) if (now - at >= window) this.#fundedAt.delete(id);
    if (recent.length === 0) return;
    const block = await this.#confirmedBlock();
    for (const id of recent) {
      const rec = this.#ledger(id);
      if (!rec || rec.phase !== 'open') continue;
      const have = await Promise.all(rec.current.state.outcome.assets.map((a) => readHoldings(this.#o.client, id, a, block === 'latest' ? undefined : block)));
      if (depositsCover(rec.current.state.outcome, have) || have.some((h) => h.concluded)) continue;
      this.#funded.delete(id);
      this.#fundedAt.delete(id);
      this.#o.facts.deleteFact(`funded:${id}`);
      this.#o.logger.warn({ channel: id, peer: rec.peer }, 'deposits counted before are gone (a re-org): the channel is unfunded until they are back');
    }
  }

  /**
   * A final channel still live has not been closed on-chain: its close failed (an RPC
   * outage, a transaction lost), so it is sent again, backing off from retryMs to 5 min.
   * (A second close of a concluded channel only reverts, so a retry can never pay twice.)
   */
  #retryCloses(): void {
    const now = Date.now();
    const base = this.#o.retryMs ?? 5_000;
    for (const rec of this.#ledgerChannels().filter((c) => c.phase === 'final')) {
      const retry = this.#closeRetries.get(rec.id);
      if (!retry) {
        this.#closeRetries.set(rec.id, { at: now + base, delayMs: base });
        continue;
      }
      if (now < retry.at) continue;
      const delayMs = Math.min(retry.delayMs * 2, 300_000);
      this.#closeRetries.set(rec.id, { at: now + delayMs, delayMs });
      this.#o.logger.info({ channel: rec.id }, 'closing a final ledger channel on-chain again');
      this.#queueClose(rec);
    }
  }

  /** One close job per channel at a time; one that runs after the channel retired does nothing. */
  #queueClose(rec: ChannelRecord): void {
    if (this.#closing.has(rec.id)) return;
    this.#closing.add(rec.id);
    this.#serial(async () => {
      try {
        if (this.#o.agent.channels().some((c) => c.id === rec.id)) await this.#close(rec);
      } finally {
        this.#closing.delete(rec.id);
      }
    });
  }

  /**
   * Reads a channel's deposits, `confirmations` blocks deep. Callers asking at once share
   * one read; a read younger than `maxAgeMs` is answer enough (status polls).
   */
  #check(rec: ChannelRecord, maxAgeMs = 0, block?: bigint | 'latest'): Promise<void> {
    if (this.#funded.has(rec.id) || rec.phase !== 'open') return Promise.resolve();
    const last = this.#checks.get(rec.id);
    if (last && (last.pending || Date.now() - last.at < maxAgeMs)) return last.done;
    const done = this.#readDeposits(rec, block).finally(() => {
      if (this.#funded.has(rec.id)) this.#checks.delete(rec.id);
      else this.#checks.set(rec.id, { at: Date.now(), pending: false, done });
    });
    this.#checks.set(rec.id, { at: Date.now(), pending: true, done });
    return done;
  }

  /** The block `confirmations` deep ('latest' at depth 1, without asking the node). */
  async #confirmedBlock(): Promise<bigint | 'latest'> {
    const depth = BigInt((this.#o.confirmations ?? DEFAULT_CONFIRMATIONS) - 1);
    if (depth === 0n) return 'latest';
    const head = await this.#o.client.publicClient.getBlockNumber();
    return head >= depth ? head - depth : 0n;
  }

  async #readDeposits(rec: ChannelRecord, block?: bigint | 'latest'): Promise<void> {
    const at = block ?? (await this.#confirmedBlock());
    const have = await Promise.all(rec.current.state.outcome.assets.map((a) => readHoldings(this.#o.client, rec.id, a, at === 'latest' ? undefined : at)));
    const outcome = rec.current.state.outcome;
    if (depositsCover(outcome, have)) {
      if (this.#funded.has(rec.id)) return;
      this.#funded.add(rec.id);
      // When it was first seen funded is kept: after a restart only recent ones are read again.
      let at = this.#o.facts.fact<number>(`funded:${rec.id}`);
      if (at === undefined) this.#o.facts.setFact(`funded:${rec.id}`, (at = Date.now()));
      this.#fundedAt.set(rec.id, at);
      this.#o.logger.info({ channel: rec.id, peer: rec.peer }, 'ledger channel funded on-chain');
    } else if (this.#o.facts.fact(`deposit:${rec.id}`) !== undefined) {
      // Ours is sent: it counts once it is this deep; if it is stuck, lost or failed, it is seen to (one job at a time).
      if (!this.#depositing.has(rec.id) && !this.#recovering.has(rec.id)) {
        this.#recovering.add(rec.id);
        this.#serial(() => this.#recoverDeposit(rec).finally(() => this.#recovering.delete(rec.id)));
      }
    } else if (sideCovered(outcome, have, rec.idx === 0 ? 1 : 0)) {
      this.#serial(() => this.#depositOwnSide(rec));
    } else if (Date.now() - (this.#o.facts.fact<number>(`opened:${rec.id}`) ?? Date.now()) > (this.#o.fundingTimeoutMs ?? DEFAULT_LIMITS.fundingTimeoutMs)) {
      this.#abandon(rec);
    }
  }

  /** The device did not deposit in time. Nothing of the gateway's is in it: it is forgotten, or, if it moved, closed. */
  #abandon(rec: ChannelRecord): void {
    this.#o.logger.warn({ channel: rec.id, peer: rec.peer }, 'the device did not fund its ledger channel in time');
    const live = this.#o.agent.channels().find((c) => c.id === rec.id);
    if (!live || live.phase !== 'open') return;
    if (live.current.state.version === 0n && !live.staged) return this.#o.agent.abandon(rec.id);
    this.#o.agent.finalize(rec.id).catch((err) => this.#o.logger.warn({ channel: rec.id, err: String(err) }, 'closing an unfunded ledger channel failed'));
  }

  /**
   * Deposits the gateway's side, asset by asset, as a durable intention: the fact is
   * written before anything is sent and records every signed version of each deposit
   * before the node gets it (see sender.ts), so that an asset is never deposited twice.
   * An asset with a version that succeeded, or one still open, is skipped; so this runs
   * again safely after #recoverDeposit has dropped versions that can no longer land.
   */
  async #depositOwnSide(rec: ChannelRecord): Promise<void> {
    const key = `deposit:${rec.id}`;
    const existing = this.#o.facts.fact<OwnDeposit | true>(key);
    if (rec.params.kind !== ChannelKind.Ledger || rec.phase !== 'open' || existing === true || (existing && !this.#redeposit.has(rec.id))) return;
    this.#redeposit.delete(rec.id);
    const record: OwnDeposit = existing ?? { txs: [] };
    this.#o.facts.setFact(key, record);
    this.#depositing.add(rec.id);
    const outcome = rec.current.state.outcome;
    const need = totals(outcome);
    try {
      for (let a = 0; a < outcome.assets.length; a++) {
        const asset = outcome.assets[a]!;
        if (record.txs.some((t) => t.asset === asset)) continue;
        // What is missing, read first: none of ours is in it (see #recoverDeposit).
        const held = await readHoldings(this.#o.client, rec.id, asset);
        const missing = need[a]! - held.amount;
        const ours = outcome.balances[a]![rec.idx];
        const amount = held.concluded || missing <= 0n ? 0n : missing < ours ? missing : ours;
        if (amount === 0n) continue;
        if (asset !== NATIVE_ASSET) await approveDeposits(this.#o.client, asset, amount);
        const tx = await deposit(this.#recording(key, record, asset), { channelId: rec.id, asset, amount });
        this.#o.logger.info({ channel: rec.id, asset, amount: amount.toString(), gasUsed: tx.gasUsed?.toString() }, 'deposited own side');
      }
    } finally {
      // Nothing signed at all: no intention is left, and the next poll tries again.
      if (record.txs.length === 0) this.#o.facts.deleteFact(key);
      this.#depositing.delete(rec.id);
    }
  }

  /** The chain client, recording every signed version of a deposit of `asset` in the fact (and the journal) before it is sent. */
  #recording(key: string, record: OwnDeposit, asset: Address): ChainClient {
    const client = this.#o.client;
    return {
      ...client,
      send: {
        ...client.send,
        onBroadcast: async (pending) => {
          await client.send.onBroadcast?.(pending);
          record.txs = [...record.txs.filter((t) => t.nonce !== pending.nonce), { ...structuredClone(pending), asset }];
          this.#o.facts.setFact(key, record);
        },
      },
    };
  }

  /**
   * The gateway's deposit was sent and the channel is not funded `confirmations` deep.
   * Decided from the deposit's own transactions, never from holdings (a lagging node may
   * show them short): a version whose nonce is not spent that deep is nudged (re-broadcast
   * with the same nonce once it has waited, so it can never land twice); once every nonce
   * is spent that deep, the versions of an asset none of which succeeded (reverted, or the
   * nonce taken by another transaction) are dropped, and that asset is deposited again.
   * An asset whose deposit succeeded is never deposited again: a shortfall left is the
   * device's.
   */
  async #recoverDeposit(rec: ChannelRecord): Promise<void> {
    const key = `deposit:${rec.id}`;
    const record = this.#o.facts.fact<OwnDeposit | true>(key);
    // `true`: written before versions were recorded; its journal entry is resumed at start.
    if (!record || record === true || this.#depositing.has(rec.id) || this.#funded.has(rec.id)) return;
    this.#depositing.add(rec.id);
    try {
      const { client } = this.#o;
      const at = await this.#confirmedBlock();
      const spent = await client.publicClient.getTransactionCount({ address: client.account, ...(at === 'latest' ? { blockTag: 'latest' } : { blockNumber: at }) });
      const open = record.txs.filter((t) => t.nonce >= spent);
      for (const t of open) await nudgePending(this.#recording(key, record, t.asset), t, client.send);
      if (open.length > 0) return;
      const outcomes = await Promise.all(record.txs.map((t) => resultOf(client, t)));
      const landed = new Set(record.txs.filter((_, i) => outcomes[i] === 'succeeded').map((t) => t.asset));
      const failed = record.txs.filter((t) => !landed.has(t.asset));
      if (failed.length === 0) return;
      this.#o.logger.warn({ channel: rec.id, nonces: failed.map((t) => t.nonce) }, 'own deposit did not land: depositing again what is missing');
      record.txs = record.txs.filter((t) => landed.has(t.asset));
      this.#o.facts.setFact(key, record);
      this.#redeposit.add(rec.id);
    } finally {
      this.#depositing.delete(rec.id);
    }
    await this.#depositOwnSide(rec);
  }

  async #close(rec: ChannelRecord): Promise<void> {
    if (rec.params.kind !== ChannelKind.Ledger || !isFullySigned(rec.current)) return;
    // Sent before a restart (the journal has resumed whatever was in flight by now), or
    // concluded by someone else: retire it once it is concluded, else send the close.
    const concluded = async (): Promise<boolean> => (await readHoldings(this.#o.client, rec.id, rec.current.state.outcome.assets[0]!)).concluded;
    if (this.#o.facts.fact(`closed:${rec.id}`) && (await concluded())) return this.#o.agent.retire(rec.id);
    this.#o.facts.setFact(`closed:${rec.id}`, true);
    try {
      const tx = await cooperativeClose(this.#o.client, { params: rec.params, signed: rec.current });
      this.#o.logger.info({ channel: rec.id, gasUsed: tx.gasUsed?.toString() }, 'ledger channel closed on-chain');
    } catch (err) {
      if (!(await concluded().catch(() => false))) {
        this.#o.facts.setFact(`closed:${rec.id}`, false);
        this.#o.logger.error({ channel: rec.id, err: String(err) }, 'cooperative close failed');
        return;
      }
    }
    // Its outcome is concluded on-chain: no state of it can be registered any more. A re-org
    // can still drop the conclusion for a while: it is read again until then (#recheckClosed).
    this.#o.facts.setFact(`concluded:${rec.id}`, Date.now());
    this.#o.agent.retire(rec.id);
  }

  /**
   * For `recheckMs` after the gateway saw a channel concluded and retired it, its conclusion
   * is read again every few seconds; one a re-org dropped is sent again from the archived
   * final state (anyone may send it; it pays every participant what the state says).
   */
  async #recheckClosed(): Promise<void> {
    const window = this.#o.recheckMs ?? 600_000;
    const now = Date.now();
    if (now - this.#closesRechecked < Math.min(10_000, window / 10)) return;
    this.#closesRechecked = now;
    for (const { key, value: at } of this.#o.facts.factsWithPrefix<number>('concluded:')) {
      const id = key.slice('concluded:'.length) as Bytes32;
      const rec = this.#o.store.loadChannel(id);
      if (!rec || now - at >= window) {
        this.#o.facts.deleteFact(key);
        this.#reclosing.delete(id);
        continue;
      }
      // Once per backoff step (a lagging node would say "not concluded" at every read), read again in the job.
      const retry = this.#reclosing.get(id);
      if (retry && now < retry.at) continue;
      const isConcluded = async (): Promise<boolean> => (await readHoldings(this.#o.client, id, rec.current.state.outcome.assets[0]!)).concluded;
      if (await isConcluded().catch(() => true)) {
        this.#reclosing.delete(id);
        continue;
      }
      const delayMs = Math.min((retry?.delayMs ?? (this.#o.retryMs ?? 5_000) / 2) * 2, 300_000);
      this.#reclosing.set(id, { at: now + delayMs, delayMs });
      this.#serial(async () => {
        if (await isConcluded()) return;
        this.#o.logger.warn({ channel: id }, 'a conclusion is gone (a re-org): closing the channel on-chain again');
        const tx = await cooperativeClose(this.#o.client, { params: rec.params, signed: rec.current });
        this.#o.logger.info({ channel: id, gasUsed: tx.gasUsed?.toString() }, 'ledger channel closed on-chain again');
      });
    }
  }

}
