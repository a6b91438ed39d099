// Reads of on-chain channel data: holdings, and registrations and releases from events.
import { decodeHoldings, type Holdings } from '../model/holdings.ts';
import type { Address, Bytes32 } from '../model/types.ts';
import type { GetContractEventsParameters, GetContractEventsReturnType } from 'viem';
import { adjudicatorAbi } from './abi.generated.ts';
import type { ChainClient } from './client.ts';
import type { Dispute } from './encode.ts';

export interface LogRange {
  /** First block to search (default: the client's fromBlock, the adjudicator's deployment block, else 0). */
  fromBlock?: bigint;
  /** Blocks per query (default LOG_WINDOW). */
  window?: bigint;
}

/** The channel's deposits in `asset`, at `blockNumber` (default: the latest block). */
export async function readHoldings(client: ChainClient, channelId: Bytes32, asset: Address, blockNumber?: bigint): Promise<Holdings> {
  const raw = await client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName: 'holdings', args: [channelId, asset], blockNumber });
  return decodeHoldings(raw);
}

/** Blocks per log query: hosted RPC nodes refuse wider `eth_getLogs` ranges. */
export const LOG_WINDOW = 10_000n;

type EventName = 'Concluded' | 'Released' | 'VirtualOutcome';

/**
 * The adjudicator's `eventName` logs matching `args`, from `range.fromBlock` (else the
 * client's: the adjudicator's deployment block) to the head, read in windows of
 * `range.window` blocks, oldest first.
 */
export async function readEvents<const N extends EventName>(client: ChainClient, eventName: N, args: GetContractEventsParameters<typeof adjudicatorAbi, N>['args'], range: LogRange = {}) {
  // Not the client's cached head: a log mined a moment ago must be in the range.
  const head = await client.publicClient.getBlockNumber({ cacheTime: 0 });
  const window = range.window ?? LOG_WINDOW;
  const logs: GetContractEventsReturnType<typeof adjudicatorAbi, N, true>[number][] = [];
  for (let from = range.fromBlock ?? client.fromBlock ?? 0n; from <= head; from += window) {
    const toBlock = from + window - 1n < head ? from + window - 1n : head;
    logs.push(...(await client.publicClient.getContractEvents({ address: client.adjudicator, abi: adjudicatorAbi, eventName, args, fromBlock: from, toBlock, strict: true } as never)) as never[]);
  }
  return logs;
}

/** What a concluded channel keeps for its locked sub-allocations, per outcome asset. */
export interface Settled {
  lockedRoot: Bytes32;
  held: readonly bigint[];
}

/** The channel's latest Concluded or Released values, or null if it has not concluded. */
export async function readSettled(client: ChainClient, channelId: Bytes32, range: LogRange = {}): Promise<Settled | null> {
  const [concluded, released] = await Promise.all([readEvents(client, 'Concluded', { channelId }, range), readEvents(client, 'Released', { parentId: channelId }, range)]);
  const latest = [...concluded, ...released].sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1)).at(-1);
  return latest ? { lockedRoot: latest.args.lockedRoot, held: latest.args.held } : null;
}

/**
 * The channel's registration as the contract stores it, at `blockNumber` (default: the
 * latest block), or null if there is none. A ledger channel's is cleared when it concludes
 * by dispute, but one a cooperative close ended stays: check `readHoldings(...).concluded`.
 */
export async function readDispute(client: ChainClient, channelId: Bytes32, blockNumber?: bigint): Promise<Dispute | null> {
  const d = await client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName: 'dispute', args: [channelId], blockNumber });
  return d.timeout === 0n ? null : d;
}

/** Ids of the sub-allocations already released from a concluded parent. */
export async function readReleased(client: ChainClient, parentId: Bytes32, range: LogRange = {}): Promise<Set<string>> {
  const logs = await readEvents(client, 'Released', { parentId }, range);
  return new Set(logs.map((l) => l.args.subId.toLowerCase()));
}
