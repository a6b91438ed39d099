import type { Address } from '../model/types.ts';
import { adjudicatorAbi } from './abi.generated.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';

/** Payouts that could not be pushed to `account` (reverting receiver, refusing token). */
export function readCredit(client: ChainClient, account: Address, asset: Address): Promise<bigint> {
  return client.publicClient.readContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName: 'credits', args: [account, asset] });
}

/** Pays the caller's credited payouts of `asset` to `to` (default: the caller). */
export async function withdraw(client: ChainClient, asset: Address, to: Address = client.account): Promise<TxResult> {
  return writeAdjudicator(client, 'withdraw', [asset, to]);
}
