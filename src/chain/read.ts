// Reads of on-chain channel data: holdings, and registrations and releases from events.
import type { Address, Bytes32 } from '../model/types.ts';
import { adjudicatorAbi } from './abi.generated.ts';
import type { ChainClient } from './client.ts';
import type { Dispute } from './encode.ts';

export interface LogRange {
  /** First block to search (default 0; use the adjudicator's deployment block on real chains). */
  fromBlock?: bigint;
}

export function readHoldings(client: ChainClient, channelId: Bytes32, asset: Address): Promise<bigint> {
  return client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName: 'holdings', args: [channelId, asset] });
}

/** The channel's latest registration, or null if it was never registered. */
export async function readDispute(client: ChainClient, channelId: Bytes32, range: LogRange = {}): Promise<Dispute | null> {
  const logs = await client.publicClient.getContractEvents({
    address: client.adjudicator,
    abi: adjudicatorAbi,
    eventName: 'Registered',
    args: { channelId },
    fromBlock: range.fromBlock ?? 0n,
    strict: true,
  });
  const last = logs.at(-1);
  if (!last) return null;
  return { version: last.args.version, timeout: last.args.timeout, outcome: last.args.outcome };
}

/** Ids of the sub-allocations already released from a concluded parent. */
export async function readReleased(client: ChainClient, parentId: Bytes32, range: LogRange = {}): Promise<Set<string>> {
  const logs = await client.publicClient.getContractEvents({
    address: client.adjudicator,
    abi: adjudicatorAbi,
    eventName: 'Released',
    args: { parentId },
    fromBlock: range.fromBlock ?? 0n,
    strict: true,
  });
  return new Set(logs.map((l) => l.args.subId.toLowerCase()));
}
