// Answers disputes for the channels a party watches: when a registration older than the
// party's latest fully signed state (or lower than its highest voucher, as a stream's
// payee) appears on-chain, it submits the newer one before the challenge period ends.
// A device can run it itself, or a watchtower that is not its counterparty can.
//
// It never misses one: besides the registrations it sees as events, it reads the
// registration of every watched channel at start and then now and then (a sweep), so a
// registration made while it was down, or in blocks an RPC outage or a re-org hid from
// it, is answered as long as the challenge period runs. And when the period of a ledger
// channel registered at what the party holds ends, it settles the channel (settle.ts):
// concludes it, which pays both sides out, and resolves and releases every virtual
// channel it locks, so nobody has to take another step.
import { outcomeHash } from '../model/hash.ts';
import type { Bytes32, Params, SignedState } from '../model/types.ts';
import type { ChainClient, TxResult } from './client.ts';
import type { Dispute } from './encode.ts';
import { AdjudicatorRevertError } from './errors.ts';
import { readDispute, readHoldings } from './read.ts';
import { register } from './register.ts';
import { advanceSettlement, type Holding, type SettleStep } from './settle.ts';
import { registerVoucher } from './registerVirtual.ts';
import { watchAdjudicator, type Watcher } from './watcher.ts';

/** What the watching party holds for a channel. */
export type Latest =
  | { params: Params; signed: SignedState }
  | { params: Params; voucher: { cumulative: bigint; signature: Uint8Array } };

export interface Response {
  channelId: Bytes32;
  answered: Dispute;
  tx: TxResult;
}

export interface WatchtowerOptions {
  /** The party's latest for a channel, or null for a channel it does not watch. */
  latest(channelId: Bytes32): Latest | null | Promise<Latest | null>;
  /** The channels to sweep: their registrations are read directly (see above). Without it only events are answered. */
  channels?: () => Bytes32[] | Promise<Bytes32[]>;
  /** How often the sweep runs (default 10 × pollIntervalMs). */
  sweepIntervalMs?: number;
  /**
   * What the party holds of a watched ledger channel, with the virtual channels it locks:
   * with it the sweep settles a ledger channel whose period has ended (see above).
   */
  holding?: (channelId: Bytes32) => Holding | null | Promise<Holding | null>;
  /** A step of a settlement the sweep drove (concluded, released, ...). */
  onStep?: (step: SettleStep, channelId: Bytes32, tx: TxResult) => void;
  /** Every registration seen, as an event or in a sweep, before it is answered. */
  onRegistered?: (channelId: Bytes32, registered: Dispute) => void;
  /** Registrations are answered once this deep; keep it well below the challenge duration in blocks. */
  confirmations: number;
  fromBlock?: bigint;
  pollIntervalMs?: number;
  onResponse?: (r: Response) => void;
  /** Failed answers (e.g. the challenge period ended) and polling errors. */
  onError?: (err: Error) => void;
}

export async function startWatchtower(client: ChainClient, opts: WatchtowerOptions): Promise<Watcher> {
  const respond = async (channelId: Bytes32, registered: Dispute): Promise<void> => {
    opts.onRegistered?.(channelId, registered);
    const latest = await opts.latest(channelId);
    if (!latest) return;
    try {
      const tx = await answer(client, latest, registered);
      if (tx) opts.onResponse?.({ channelId, answered: registered, tx });
    } catch (err) {
      // What is registered by now is already as new as ours (its own event follows).
      if (err instanceof AdjudicatorRevertError && (err.errorName === 'VersionNotNewer' || err.errorName === 'VoucherNotHigher')) return;
      opts.onError?.(err as Error);
    }
  };
  const events = await watchAdjudicator(client, {
    confirmations: opts.confirmations,
    fromBlock: opts.fromBlock,
    pollIntervalMs: opts.pollIntervalMs,
    onError: opts.onError,
    // Registrations answered on blocks a re-org replaced are read again as they stand now.
    onReorg: () => void (opts.channels && sweepAgain()),
    onEvent: async (event) => {
      if (event.eventName !== 'Registered') return;
      const { channelId, version, timeout, outcome } = event.args;
      await respond(channelId, { version, timeout, outcome });
    },
  });
  if (!opts.channels) return events;

  // The sweep: every watched channel's registration, read as it stands.
  const sweepChannel = async (channelId: Bytes32, now: bigint): Promise<void> => {
    const registered = await readDispute(client, channelId);
    if (registered) await respond(channelId, registered);
    if (settled.has(channelId)) return;
    const held = await opts.holding?.(channelId);
    if (!held || !(await settling(held, registered, now))) return;
    const settlement = await advanceSettlement(client, held, { onStep: opts.onStep });
    if (settlement.status === 'settled') settled.add(channelId);
  };
  /** Channels this tower saw settled: nothing more to read for them. */
  const settled = new Set<Bytes32>();
  /**
   * Whether the sweep settles this channel now: registered at exactly what the party holds
   * (version and outcome) with the period over, or concluded with locks still to release.
   */
  const settling = async (held: Holding, registered: Dispute | null, now: bigint): Promise<boolean> => {
    const ours = held.signed.state;
    if (registered) return now >= registered.timeout && registered.version === ours.version && registered.outcome === outcomeHash(ours.outcome);
    if (ours.outcome.locked.length === 0) return false;
    return (await readHoldings(client, ours.channelId, ours.outcome.assets[0]!)).concluded;
  };
  let sweeping: Promise<void> | null = null;
  // One sweep at a time (a tick while one runs is skipped), and one channel's failure is that channel's alone.
  const sweep = (): Promise<void> => {
    sweeping ??= (async () => {
      const { timestamp } = await client.publicClient.getBlock();
      for (const id of new Set(await opts.channels!())) {
        await sweepChannel(id, timestamp).catch((err: unknown) => opts.onError?.(err as Error));
      }
    })()
      .catch((err: unknown) => opts.onError?.(err as Error))
      .finally(() => (sweeping = null));
    return sweeping;
  };
  // After a re-org: a sweep running now may have read the old blocks, so one more follows it.
  const sweepAgain = (): Promise<void> => (sweeping ? sweeping.then(sweep) : sweep());
  await sweep();
  let stopped = false;
  const timer = setInterval(() => void (stopped || sweeping || sweep()), opts.sweepIntervalMs ?? 10 * (opts.pollIntervalMs ?? 1000));
  timer.unref();
  return {
    get cursor() {
      return events.cursor;
    },
    poll: async () => {
      await events.poll();
      await sweep();
    },
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await sweeping;
      await events.stop();
    },
  };
}

/** Submits what beats `registered`, or nothing if it already is the latest. */
async function answer(client: ChainClient, latest: Latest, registered: Dispute): Promise<TxResult | null> {
  if ('voucher' in latest) {
    if (latest.voucher.cumulative <= BigInt(registered.outcome)) return null;
    return registerVoucher(client, { params: latest.params, ...latest.voucher });
  }
  if (latest.signed.state.version <= registered.version) return null;
  // Refutes; a final ledger state closes the channel even during a dispute.
  return register(client, latest);
}
