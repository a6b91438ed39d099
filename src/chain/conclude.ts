import { channelId } from '../model/channelId.ts';
import type { Allocation, Params } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { toContractOutcome, toContractParams, type Dispute } from './encode.ts';
import { NotRegisteredError } from './errors.ts';
import { readDispute, type LogRange } from './read.ts';

export interface ConcludeArgs extends LogRange {
  params: Params;
  /** The registered state's outcome (its hash is what the contract stored). */
  outcome: Allocation;
  /** The registration; read from events when omitted. */
  registered?: Dispute;
}

/** After the challenge period, pays out a ledger channel's free balances in the same transaction. */
export async function conclude(client: ChainClient, args: ConcludeArgs): Promise<TxResult> {
  const registered = args.registered ?? (await readDispute(client, channelId(args.params), args));
  if (!registered) throw new NotRegisteredError(`channel ${channelId(args.params)} is not registered`);
  return writeAdjudicator(client, 'conclude', [toContractParams(args.params, client), registered, toContractOutcome(args.outcome)]);
}
