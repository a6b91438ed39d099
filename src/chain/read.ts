// Reads of on-chain channel data: holdings, and registrations and releases from events.
import { decodeHoldings, type Holdings } from '../model/holdings.ts';
import type { Address, Bytes32 } from '../model/types.ts';
import { adjudicatorAbi } from './abi.generated.ts';
import type { ChainClient } from './client.ts';
import type { Dispute } from './encode.ts';

export interface LogRange {
  /** First block to search (default 0; use the adjudicator's deployment block on real chains). */
  fromBlock?: bigint;
}

/** The channel's deposits in `asset`, at `blockNumber` (default: the latest block). */
export async function readHoldings(client: ChainClient, channelId: Bytes32, asset: Address, blockNumber?: bigint): Promise<Holdings> {
  const raw = await client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName: 'holdings', args: [channelId, asset], blockNumber });
  return decodeHoldings(raw);
}

/** What every event query here shares: the adjudicator, its ABI, the range, typed args. */
function eventQuery(client: ChainClient, range: LogRange) {
  return { address: client.adjudicator, abi: adjudicatorAbi, fromBlock: range.fromBlock ?? 0n, strict: true } as const;
}

/** What a concluded channel keeps for its locked sub-allocations, per outcome asset. */
export interface Settled {
  lockedRoot: Bytes32;
  held: readonly bigint[];
}

/** The channel's latest Concluded or Released values, or null if it has not concluded. */
export async function readSettled(client: ChainClient, channelId: Bytes32, range: LogRange = {}): Promise<Settled | null> {
  const query = eventQuery(client, range);
  const [concluded, released] = await Promise.all([
    client.publicClient.getContractEvents({ ...query, eventName: 'Concluded', args: { channelId } }),
    client.publicClient.getContractEvents({ ...query, eventName: 'Released', args: { parentId: channelId } }),
  ]);
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
  const logs = await client.publicClient.getContractEvents({ ...eventQuery(client, range), eventName: 'Released', args: { parentId } });
  return new Set(logs.map((l) => l.args.subId.toLowerCase()));
}
