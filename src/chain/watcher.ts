// Delivers the adjudicator's events once they are `confirmations` blocks deep, in chain
// order, so that a re-org shallower than that can never make the caller act on a log
// that disappears. A deeper one is found by block hash (the last blocks scanned are
// remembered by hash, not only by number): the watcher rewinds to the fork point, says
// so, and delivers the new blocks' events. Delivery is at least once: if a handler
// throws, the same block range is delivered again on the next poll, so handlers must be
// idempotent. The caller persists `cursor` to resume after a restart.
import type { GetContractEventsReturnType, Hash } from 'viem';
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
  /** A re-org replaced blocks already delivered: events from `fromBlock` on are delivered again. */
  onReorg?: (fromBlock: bigint) => void | Promise<void>;
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

/** Blocks remembered by hash: a re-org deeper than this rewinds a whole range further. */
const REMEMBERED = 128;

interface Seen {
  block: bigint;
  hash: Hash;
}

export async function watchAdjudicator(client: ChainClient, opts: WatchOptions): Promise<Watcher> {
  if (!Number.isInteger(opts.confirmations) || opts.confirmations < 1) throw new RangeError('confirmations must be an integer ≥ 1');
  const depth = BigInt(opts.confirmations - 1);
  const maxRange = opts.maxBlockRange ?? 2000n;
  let cursor = opts.fromBlock ?? (await client.publicClient.getBlockNumber());
  /** Never rewound past: what was asked for starts here. */
  const first = cursor;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  /** The newest blocks delivered, by hash, oldest first: where a re-org is looked for. */
  let delivered: Seen[] = [];
  // An RPC that fails throws (the poll reports it and is tried again): only a hash that differs is a re-org.
  const blockAt = async (block: bigint): Promise<Seen & { parentHash: Hash }> => {
    const b = await client.publicClient.getBlock({ blockNumber: block });
    return { block, hash: b.hash!, parentHash: b.parentHash };
  };

  /** Moves the cursor back past the newest delivered block the chain still has, if a re-org replaced any. */
  async function rewind(head: bigint): Promise<void> {
    const newest = delivered.at(-1);
    // A node behind the last block delivered (a lagging backend, a chain shortened for now) shows nothing yet.
    if (!newest || newest.block > head || (await blockAt(newest.block)).hash === newest.hash) return;
    // Deeper than what is remembered: from the oldest remembered block's range on. The walk
    // changes nothing until it is done, so an RPC failure in it leaves all as it was.
    let from = delivered[0]!.block - maxRange;
    let kept = 0;
    for (let i = delivered.length - 1; i >= 0; i--) {
      if ((await blockAt(delivered[i]!.block)).hash !== delivered[i]!.hash) continue;
      from = delivered[i]!.block + 1n;
      kept = i + 1;
      break;
    }
    delivered = delivered.slice(0, kept);
    cursor = from < first ? first : from;
    await Promise.resolve(opts.onReorg?.(cursor)).catch((err: unknown) => opts.onError?.(err as Error));
  }

  async function scan(): Promise<void> {
    const head = await client.publicClient.getBlockNumber({ cacheTime: 0 });
    await rewind(head);
    const safe = head - depth;
    while (!stopped && cursor <= safe) {
      const toBlock = cursor + maxRange - 1n < safe ? cursor + maxRange - 1n : safe;
      // Hashes of the newest blocks only (those a re-org can still reach), and of each range's last.
      const tailFrom = safe - BigInt(REMEMBERED) + 1n;
      const tail: Seen[] = [];
      for (let block = tailFrom > cursor ? tailFrom : cursor; block <= toBlock; block++) tail.push(await blockAt(block));
      const last = tail.at(-1)?.block === toBlock ? tail.at(-1)! : await blockAt(toBlock);
      if (tail.at(-1)?.block !== toBlock) tail.push(last);
      // The range must follow what was delivered: a re-org since the rewind is found at the next poll.
      const previous = delivered.at(-1);
      if (previous && previous.block === cursor - 1n && tail[0]?.block === cursor && (tail[0] as { parentHash?: Hash }).parentHash !== previous.hash) return;
      const logs = await client.publicClient.getContractEvents({ address: client.adjudicator, abi: adjudicatorAbi, fromBlock: cursor, toBlock, strict: true });
      // The range changed while it was read: it is read again at the next poll.
      if ((await blockAt(toBlock)).hash !== last.hash) return;
      logs.sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1));
      for (const log of logs) await opts.onEvent(log);
      delivered.push(...tail.map(({ block, hash }) => ({ block, hash })));
      delivered.splice(0, Math.max(0, delivered.length - REMEMBERED));
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
