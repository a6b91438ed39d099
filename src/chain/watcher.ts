// Delivers the adjudicator's events once they are `confirmations` blocks deep, in chain
// order, so that a re-org shallower than that can never make the caller act on a log
// that disappears. Delivery is at least once: if a handler throws, the same block range
// is delivered again on the next poll. The caller persists `cursor` to resume after a restart.
import type { GetContractEventsReturnType } from 'viem';
import { adjudicatorAbi } from './abi.generated.ts';
import type { ChainClient } from './client.ts';
import { decodeChainError } from './errors.ts';

export type AdjudicatorEvent = GetContractEventsReturnType<typeof adjudicatorAbi, undefined, true>[number];

export interface WatchOptions {
  /** 1 = act once the log's block is included; n = once n - 1 blocks follow it. */
  confirmations: number;
  /** First block to scan (default: the current head). */
  fromBlock?: bigint;
  pollIntervalMs?: number;
  /** Largest block range per getLogs request. */
  maxBlockRange?: bigint;
  onEvent: (event: AdjudicatorEvent) => void | Promise<void>;
  /** Polling errors; the watcher retries on the next tick. Default: ignored. */
  onError?: (err: Error) => void;
}

export interface Watcher {
  /** The next block the watcher will scan; everything before it was delivered. */
  readonly cursor: bigint;
  /** Scans once now (tests; otherwise polling does this). */
  poll(): Promise<void>;
  stop(): Promise<void>;
}

export async function watchAdjudicator(client: ChainClient, opts: WatchOptions): Promise<Watcher> {
  if (!Number.isInteger(opts.confirmations) || opts.confirmations < 1) throw new RangeError('confirmations must be an integer ≥ 1');
  const depth = BigInt(opts.confirmations - 1);
  const maxRange = opts.maxBlockRange ?? 2000n;
  let cursor = opts.fromBlock ?? (await client.publicClient.getBlockNumber());
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  async function scan(): Promise<void> {
    const head = await client.publicClient.getBlockNumber({ cacheTime: 0 });
    const safe = head - depth;
    while (!stopped && cursor <= safe) {
      const toBlock = cursor + maxRange - 1n < safe ? cursor + maxRange - 1n : safe;
      const logs = await client.publicClient.getContractEvents({ address: client.adjudicator, abi: adjudicatorAbi, fromBlock: cursor, toBlock, strict: true });
      logs.sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1));
      for (const log of logs) await opts.onEvent(log);
      cursor = toBlock + 1n;
    }
  }

  // Scans never overlap: each waits for the previous one.
  function poll(): Promise<void> {
    running = running.then(scan).catch((err: unknown) => opts.onError?.(decodeChainError(err)));
    return running;
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => void poll().then(schedule), opts.pollIntervalMs ?? 1000);
  }
  schedule();

  return {
    get cursor() {
      return cursor;
    },
    poll,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
