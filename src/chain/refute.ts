import type { Params, SignedState } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { toContractParams, toContractSignatures, toContractState, type Dispute } from './encode.ts';

export interface RefuteArgs {
  params: Params;
  /** The registration being refuted, as read by `readDispute`. */
  registered: Dispute;
  /** A newer state signed by both participants. */
  signed: SignedState;
}

/** Replaces a registered state with a newer one within the challenge period. */
export async function refute(client: ChainClient, args: RefuteArgs): Promise<TxResult> {
  return writeAdjudicator(client, 'refute', [toContractParams(args.params, client), args.registered, toContractState(args.signed.state), toContractSignatures(args.signed)]);
}
