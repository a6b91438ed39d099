// Sends a transaction so that it survives a stuck mempool and a restart: a transaction not
// mined in time is replaced (same nonce, higher fees), and every broadcast is reported
// before waiting, so the caller can journal it and `resumePending` after a restart.
import { keccak256, TransactionNotFoundError, TransactionReceiptNotFoundError, type Hex } from 'viem';
import type { Address } from '../model/types.ts';
import type { ChainClient, TxResult } from './client.ts';
import { ChainTransactionError, TransactionRevertedError } from './errors.ts';

export interface TxRequest {
  to: Address;
  data: Hex;
  value?: bigint;
  gas: bigint;
}

/** Everything needed to find or replace a broadcast transaction; safe to persist as JSON (with bigints as strings). */
export interface PendingTx {
  request: TxRequest;
  nonce: number;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  /** Every hash broadcast for this nonce, oldest first; any of them may be mined. */
  hashes: Hex[];
  /** When the last version was broadcast (ms since the epoch). */
  at?: number;
}

export interface SendOptions {
  /** Replace a transaction that is not mined after this long (default 60 s). */
  stuckAfterMs?: number;
  /** Fee increase per replacement, percent (nodes require at least 10; default 25). */
  bumpPercent?: number;
  /** Replacements before giving up (default 5). */
  maxReplacements?: number;
  /** Called after every broadcast, before waiting; journal `pending` to resume after a restart. */
  onBroadcast?: (pending: PendingTx) => void | Promise<void>;
  /**
   * Called once a nonce is spent: one version mined (successfully or reverted), or another
   * transaction took it. Nothing is left to resume: drop `pending` from the journal. (A
   * transaction given up on while still unmined is not finished: it stays to be resumed.)
   */
  onFinished?: (pending: PendingTx) => void | Promise<void>;
}

/** Per account, the tail of the queue of nonce assignments in this process. */
const nonceQueues = new Map<string, Promise<unknown>>();

/** Broadcasts `request` with a fresh nonce and waits until one of its versions is mined. */
export async function sendReliably(client: ChainClient, request: TxRequest, opts: SendOptions = {}): Promise<TxResult> {
  // Concurrent sends from one account take nonces one after another; only waiting overlaps.
  const previous = nonceQueues.get(client.account) ?? Promise.resolve();
  const broadcasted = previous.catch(() => undefined).then(async () => {
    const [nonce, fees] = await Promise.all([
      client.publicClient.getTransactionCount({ address: client.account, blockTag: 'pending' }),
      client.publicClient.estimateFeesPerGas(),
    ]);
    const pending: PendingTx = { request, nonce, maxFeePerGas: fees.maxFeePerGas, maxPriorityFeePerGas: fees.maxPriorityFeePerGas, hashes: [] };
    await broadcast(client, pending, opts);
    return pending;
  });
  nonceQueues.set(client.account, broadcasted);
  const pending = await broadcasted;
  if (nonceQueues.get(client.account) === broadcasted) nonceQueues.delete(client.account);
  return finishing(waitOrReplace(client, pending, opts), pending, opts);
}

/** Reports the nonce spent (see SendOptions.onFinished) when `waiting` ends otherwise than by giving up unmined. */
async function finishing(waiting: Promise<TxResult>, pending: PendingTx, opts: SendOptions): Promise<TxResult> {
  try {
    const result = await waiting;
    await opts.onFinished?.(pending);
    return result;
  } catch (err) {
    if (err instanceof TransactionRevertedError || (err instanceof ChainTransactionError && /used by another/.test(err.message))) await opts.onFinished?.(pending);
    throw err;
  }
}

/** After a restart: waits for a journalled transaction, re-broadcasting it if the node lost it. */
export async function resumePending(client: ChainClient, pending: PendingTx, opts: SendOptions = {}): Promise<TxResult> {
  return finishing(
    (async () => {
      const mined = await minedVersion(client, pending.hashes);
      if (mined) return mined;
      if (!(await nonceUsed(client, pending.nonce))) await replace(client, pending, opts);
      return waitOrReplace(client, pending, opts);
    })(),
    pending,
    opts,
  );
}

/**
 * Signs here and reports the version (its hash known) before handing it to the node: a
 * call that fails or a crash after the node took it must still leave it journalled, or a
 * caller would send a second transaction beside the first.
 */
async function broadcast(client: ChainClient, pending: PendingTx, opts: SendOptions): Promise<void> {
  const tx = {
    to: pending.request.to,
    data: pending.request.data,
    value: pending.request.value,
    gas: pending.request.gas,
    nonce: pending.nonce,
    maxFeePerGas: pending.maxFeePerGas,
    maxPriorityFeePerGas: pending.maxPriorityFeePerGas,
  };
  const { account } = client.walletClient;
  if (account.type !== 'local') {
    // An account the node signs for (tests impersonate contracts): its hash comes back only from the send.
    pending.hashes.push(await client.walletClient.sendTransaction(tx));
    pending.at = Date.now();
    await opts.onBroadcast?.(pending);
    return;
  }
  const signed = await client.walletClient.signTransaction({ ...tx, account, chain: client.walletClient.chain, type: 'eip1559' });
  // Signing is deterministic: the same version again (see resend) has the same hash.
  const hash = keccak256(signed);
  if (pending.hashes.at(-1) !== hash) pending.hashes.push(hash);
  pending.at = Date.now();
  await opts.onBroadcast?.(pending);
  await client.publicClient.sendRawTransaction({ serializedTransaction: signed });
}

/**
 * One step of resumePending, for a caller that polls: if no version of `pending` is
 * mined and its nonce is still free, and its last version has waited `stuckAfterMs`,
 * broadcasts a replacement (same nonce, higher fees). Returns the mined version, if any.
 */
export async function nudgePending(client: ChainClient, pending: PendingTx, opts: SendOptions = {}): Promise<TxResult | null> {
  const mined = await minedVersion(client, pending.hashes);
  if (mined) return mined;
  if (await nonceUsed(client, pending.nonce)) return null;
  if (await resentIfLost(client, pending, opts)) return null;
  if (Date.now() - (pending.at ?? 0) < (opts.stuckAfterMs ?? 60_000)) return null;
  await replace(client, pending, opts);
  return null;
}

/** How long a transaction must stay unknown to the node, seen twice, before it counts as lost. */
const LOST_AFTER_MS = 15_000;
/** When each pending transaction (nonce and latest hash: callers may hold copies) was first found unknown to the node, in this process. */
const unknownSince = new Map<string, number>();

/**
 * A transaction the node no longer holds, neither in its pool nor in a block still in the
 * chain (a re-org dropped it, the node restarted without it), is sent again as it was: same
 * fees, same hash, so it is no replacement and costs nothing. An RPC that does not show
 * pooled transactions only makes it resend the same bytes now and then. Returns whether it did.
 */
async function resentIfLost(client: ChainClient, pending: PendingTx, opts: SendOptions): Promise<boolean> {
  const key = `${client.account}:${pending.nonce}:${pending.hashes.at(-1)}`;
  if (client.walletClient.account.type !== 'local' || !(await unknownToNode(client, pending))) {
    unknownSince.delete(key);
    return false;
  }
  const since = unknownSince.get(key);
  if (since === undefined) {
    // Bounded: a key left by a transaction that finished otherwise goes with the oldest.
    if (unknownSince.size >= 1000) unknownSince.delete(unknownSince.keys().next().value!);
    unknownSince.set(key, Date.now());
  }
  if (since === undefined || Date.now() - since < LOST_AFTER_MS) return false;
  unknownSince.delete(key);
  // The same bytes again; the stuck clock keeps running (a node that hides its pool must not
  // keep a stuck transaction from its fee bump), and a refusal ("already known", "nonce too
  // low": it was mined) is for the next poll to judge.
  const at = pending.at;
  try {
    await broadcast(client, pending, opts);
  } catch {
    return false;
  } finally {
    pending.at = at;
  }
  return true;
}

async function unknownToNode(client: ChainClient, pending: PendingTx): Promise<boolean> {
  for (const hash of pending.hashes) {
    const tx = await client.publicClient.getTransaction({ hash }).catch((err: unknown) => {
      if (err instanceof TransactionNotFoundError) return null;
      throw err;
    });
    if (!tx) continue;
    if (tx.blockNumber === null || tx.blockHash === null) return false;
    if ((await client.publicClient.getBlock({ blockNumber: tx.blockNumber })).hash === tx.blockHash) return false;
  }
  return true;
}

async function replace(client: ChainClient, pending: PendingTx, opts: SendOptions): Promise<void> {
  const bump = BigInt(100 + Math.max(opts.bumpPercent ?? 25, 10));
  const current = await client.publicClient.estimateFeesPerGas();
  const bumped = (x: bigint): bigint => (x * bump + 99n) / 100n;
  pending.maxPriorityFeePerGas = max(bumped(pending.maxPriorityFeePerGas), current.maxPriorityFeePerGas);
  pending.maxFeePerGas = max(bumped(pending.maxFeePerGas), current.maxFeePerGas, pending.maxPriorityFeePerGas);
  await broadcast(client, pending, opts);
}

/** A receipt can lag the account's nonce on some nodes; only a longer silence means another transaction took the nonce. */
const RECEIPT_LAG_MS = 5_000;

async function waitOrReplace(client: ChainClient, pending: PendingTx, opts: SendOptions): Promise<TxResult> {
  const stuckAfter = opts.stuckAfterMs ?? 60_000;
  const interval = Math.min(client.publicClient.pollingInterval, stuckAfter);
  let nonceUsedSince: number | undefined;
  for (let replacements = 0; ; replacements++) {
    const deadline = Date.now() + stuckAfter;
    while (Date.now() < deadline || nonceUsedSince !== undefined) {
      const mined = await minedVersion(client, pending.hashes);
      if (mined) return mined;
      if (await nonceUsed(client, pending.nonce)) {
        nonceUsedSince ??= Date.now();
        if (Date.now() - nonceUsedSince > RECEIPT_LAG_MS) throw new ChainTransactionError(`nonce ${pending.nonce} was used by another transaction`);
      } else {
        await resentIfLost(client, pending, opts);
      }
      await new Promise((r) => setTimeout(r, interval));
    }
    if (replacements >= (opts.maxReplacements ?? 5)) throw new ChainTransactionError(`transaction with nonce ${pending.nonce} not mined after ${replacements} replacements`);
    await replace(client, pending, opts);
  }
}

/** Whether a version of `pending` is mined and succeeded, mined and reverted, or none is mined. */
export async function resultOf(client: ChainClient, pending: PendingTx): Promise<'succeeded' | 'reverted' | null> {
  try {
    return (await minedVersion(client, pending.hashes)) ? 'succeeded' : null;
  } catch (err) {
    if (err instanceof TransactionRevertedError) return 'reverted';
    throw err;
  }
}

async function nonceUsed(client: ChainClient, nonce: number): Promise<boolean> {
  return (await client.publicClient.getTransactionCount({ address: client.account, blockTag: 'latest' })) > nonce;
}

async function minedVersion(client: ChainClient, hashes: readonly Hex[]): Promise<TxResult | null> {
  for (const hash of hashes) {
    const receipt = await client.publicClient.getTransactionReceipt({ hash }).catch((err: unknown) => {
      if (err instanceof TransactionReceiptNotFoundError) return null;
      throw err;
    });
    if (!receipt) continue;
    // A node may still answer a receipt from a block a re-org replaced (anvil does): only one in the chain counts.
    if ((await client.publicClient.getBlock({ blockNumber: receipt.blockNumber })).hash !== receipt.blockHash) continue;
    if (receipt.status !== 'success') throw new TransactionRevertedError(`transaction ${hash} reverted`);
    return { hash, blockNumber: receipt.blockNumber, gasUsed: receipt.gasUsed };
  }
  return null;
}

function max(...xs: bigint[]): bigint {
  return xs.reduce((a, b) => (a > b ? a : b));
}
