// Settles a ledger channel on-chain from what one party holds, with every virtual channel
// it locks: registers the party's newest state (or refutes an older one), concludes when
// the challenge period ends, resolves each locked virtual channel (the highest voucher or
// newest state the party holds, else a zero voucher, which the payee must answer) and
// releases it into the concluded parent. Every step reads the chain first, so one call
// does what is due now and says what it waits for; calling again after a crash, or after
// another party acted (a tower, the peer), carries on from where the chain stands.
import { channelId } from '../model/channelId.ts';
import { outcomeHash } from '../model/hash.ts';
import { type Allocation, type Bytes32, ChannelKind, type Params, type SignedState, type State } from '../model/types.ts';
import type { ChainClient, TxResult } from './client.ts';
import { conclude } from './conclude.ts';
import { concludeVirtual } from './concludeVirtual.ts';
import { cumulativeOf, type Dispute } from './encode.ts';
import { AdjudicatorRevertError, SettlementError, TransactionRevertedError } from './errors.ts';
import { currentLockedRoot } from './lockedTree.ts';
import { readDispute, readEvents, readHoldings, readReleased, readSettled, type LogRange } from './read.ts';
import { register } from './register.ts';
import { registerVoucher } from './registerVirtual.ts';

/** What a party holds of a virtual channel: its parameters and its best evidence, if any. */
export interface VirtualEvidence {
  params: Params;
  /** A stream: the highest voucher it holds (none: a zero voucher starts the period). */
  voucher?: { cumulative: bigint; signature: Uint8Array };
  /** A bidirectional channel: its newest state signed by both. */
  signed?: SignedState;
}

/** What a party holds of a ledger channel. */
export interface Holding {
  params: Params;
  /** Its newest state signed by both participants. */
  signed: SignedState;
  /**
   * Its own proposal the peer may have countersigned without its acceptance arriving:
   * should the peer register and conclude that one, the party settles from it (a
   * conclusion needs no signature, and its locks are the party's own).
   */
  proposed?: State;
  /** Evidence per virtual channel the state locks (by id, lower case). */
  virtuals: ReadonlyMap<string, VirtualEvidence>;
}

export type SettleStep = 'registered' | 'concluded' | 'registeredVirtual' | 'released';

/** A challenge period runs until `until` (chain time, seconds) on `channel`. */
export interface Waiting {
  status: 'waiting';
  until: bigint;
  channel: Bytes32;
}

export type Settlement = { status: 'settled' } | Waiting;

export interface SettleOptions extends LogRange {
  onStep?: (step: SettleStep, channel: Bytes32, tx: TxResult) => void;
}

/** Rounds of read-then-act per call: each either acts or returns; a race lost to another sender costs one. */
const MAX_ROUNDS = 8;

/** Does what is due now to settle `h` on-chain; see the file's note. Throws SettlementError when it cannot. */
export async function advanceSettlement(client: ChainClient, h: Holding, opts: SettleOptions = {}): Promise<Settlement> {
  const id = channelId(h.params);
  const assets = h.signed.state.outcome.assets;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const { timestamp: now } = await client.publicClient.getBlock();
    if (!(await readHoldings(client, id, assets[0]!)).concluded) {
      const waiting = await disputeLedger(client, h, id, now, opts);
      if (waiting) return waiting;
      continue;
    }
    const [settled, released] = await Promise.all([readSettled(client, id, opts), readReleased(client, id, opts)]);
    // Concluded at the party's newest state, or at its own proposal (see Holding.proposed).
    const outcome = [h.signed.state, h.proposed].find((s) => s && settled && currentLockedRoot(s.outcome.locked, released) === settled.lockedRoot)?.outcome;
    if (!outcome) {
      if (h.signed.state.outcome.locked.length === 0 && !h.proposed?.outcome.locked.length) return { status: 'settled' };
      throw new SettlementError(`channel ${id} concluded at a state this party does not hold: its locks cannot be released from here`);
    }
    const open = outcome.locked.filter((sub) => !released.has(sub.id.toLowerCase()));
    if (open.length === 0) return { status: 'settled' };
    let wait: Waiting | null = null;
    let acted = false;
    // One virtual channel that cannot be settled (yet) must not hold up its siblings.
    let failure: unknown = null;
    for (const sub of open) {
      try {
        const evidence = h.virtuals.get(sub.id.toLowerCase());
        if (!evidence) throw new SettlementError(`channel ${id} locks virtual channel ${sub.id}, which this party does not know`);
        const resolved = await resolveVirtual(client, evidence, now, opts);
        if (resolved === null) {
          acted = true;
        } else if ('status' in resolved) {
          if (!wait || resolved.until < wait.until) wait = resolved;
        } else {
          acted = true;
          await settleRace('released', sub.id, () => concludeVirtual(client, { parent: h.params, parentOutcome: outcome, virtual: evidence.params, virtualOutcome: resolved.outcome, fromBlock: opts.fromBlock }), opts);
        }
      } catch (err) {
        failure ??= err;
      }
    }
    if (acted) continue;
    if (wait) return wait;
    throw failure;
  }
  throw new SettlementError(`channel ${id}: the chain kept changing under ${MAX_ROUNDS} rounds of settlement; try again`);
}

/** The ledger channel is not concluded: register or refute, wait, or conclude. Returns what it waits for, or null to read again. */
async function disputeLedger(client: ChainClient, h: Holding, id: Bytes32, now: bigint, opts: SettleOptions): Promise<Settlement | null> {
  const registered = await readDispute(client, id);
  if (!registered || (registered.version < h.signed.state.version && now < registered.timeout)) {
    await settleRace('registered', id, () => register(client, { params: h.params, signed: h.signed }), opts);
    return null;
  }
  // The peer may have registered the party's own proposal, countersigned: it concludes from that.
  const ours = h.proposed && registered.version === h.proposed.version && registered.outcome === outcomeHash(h.proposed.outcome) ? h.proposed : h.signed.state;
  if (registered.version !== ours.version || registered.outcome !== outcomeHash(ours.outcome)) {
    throw new SettlementError(
      registered.version > ours.version
        ? `channel ${id} is registered at version ${registered.version}, newer than this party's ${ours.version}: its store is not its newest`
        : `channel ${id} was registered at version ${registered.version} and its challenge period ended before version ${ours.version} was submitted`,
    );
  }
  if (now < registered.timeout) return { status: 'waiting', until: registered.timeout, channel: id };
  await settleRace('concluded', id, () => conclude(client, { params: h.params, outcome: ours.outcome }), opts);
  return null;
}

/**
 * A virtual channel resolved on-chain (with its outcome, for a bidirectional one), or
 * what its period waits for, or null once it has registered or raised the party's
 * evidence (read again).
 */
async function resolveVirtual(client: ChainClient, ev: VirtualEvidence, now: bigint, opts: SettleOptions): Promise<{ outcome?: Allocation } | Waiting | null> {
  const id = channelId(ev.params);
  const registered = await readDispute(client, id);
  if (!registered || now < registered.timeout) {
    if (!registered || beats(client, ev, registered)) {
      await settleRace('registeredVirtual', id, () => submitVirtual(client, ev), opts);
      return null;
    }
    return { status: 'waiting', until: registered.timeout, channel: id };
  }
  if (ev.params.kind === ChannelKind.Stream) return {};
  const ours = ev.signed?.state;
  if (ours && ours.version === registered.version && outcomeHash(ours.outcome) === registered.outcome) return { outcome: ours.outcome };
  return { outcome: await registeredOutcome(client, id, registered, opts) };
}

/** Whether the party's evidence improves on what is registered (a payee restating the amount resolves at once). */
function beats(client: ChainClient, ev: VirtualEvidence, registered: Dispute): boolean {
  if (ev.params.kind === ChannelKind.Stream) {
    const mine = ev.voucher?.cumulative ?? 0n;
    const payee = client.account === ev.params.participants[1].toLowerCase();
    return mine > cumulativeOf(registered) || (payee && mine === cumulativeOf(registered));
  }
  return !!ev.signed && ev.signed.state.version > registered.version;
}

async function submitVirtual(client: ChainClient, ev: VirtualEvidence): Promise<TxResult> {
  if (ev.params.kind === ChannelKind.Stream) {
    return registerVoucher(client, { params: ev.params, cumulative: ev.voucher?.cumulative ?? 0n, signature: ev.voucher?.signature ?? null });
  }
  if (!ev.signed) throw new SettlementError(`virtual channel ${channelId(ev.params)}: this party holds no state signed by both`);
  return register(client, { params: ev.params, signed: ev.signed });
}

/**
 * The outcome a bidirectional virtual channel was registered with, which the record keeps
 * only as a hash: from the contract's VirtualOutcome event of that registration.
 */
async function registeredOutcome(client: ChainClient, id: Bytes32, registered: Dispute, range: LogRange): Promise<Allocation> {
  const logs = await readEvents(client, 'VirtualOutcome', { channelId: id }, range);
  for (const log of logs.reverse()) {
    const o = log.args.outcome;
    const outcome: Allocation = { assets: o.assets, balances: o.balances.map(([a, b]) => [a, b] as const), locked: [] };
    if (log.args.version === registered.version && outcomeHash(outcome) === registered.outcome) return outcome;
  }
  throw new SettlementError(`virtual channel ${id}: no VirtualOutcome event matches its registration`);
}

/** Sends one step; a revert because another party acted first (same step, newer state) is no failure: the next round reads the chain again. */
async function settleRace(step: SettleStep, channel: Bytes32, send: () => Promise<TxResult>, opts: SettleOptions): Promise<void> {
  try {
    const tx = await send();
    opts.onStep?.(step, channel, tx);
  } catch (err) {
    if ((err instanceof AdjudicatorRevertError && RACED.has(err.errorName)) || err instanceof TransactionRevertedError) return;
    throw err;
  }
}

const RACED = new Set(['ChannelConcluded', 'VersionNotNewer', 'VoucherNotHigher', 'NotRegistered', 'InvalidProof', 'ParentNotConcluded', 'ChallengePeriodOver']);
