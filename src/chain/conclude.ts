import type { Allocation, Params } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { toContractOutcome, toContractParams } from './encode.ts';

export interface ConcludeArgs {
  params: Params;
  /** The registered state's outcome (its hash is what the contract stored). */
  outcome: Allocation;
}

/** After the challenge period, pays out a ledger channel's free balances in the same transaction. */
export async function conclude(client: ChainClient, args: ConcludeArgs): Promise<TxResult> {
  return writeAdjudicator(client, 'conclude', [toContractParams(args.params, client), toContractOutcome(args.outcome)]);
}
