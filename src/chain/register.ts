import type { Params, SignedState } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { toContractParams, toContractSignatures, toContractState } from './encode.ts';

export interface RegisterArgs {
  params: Params;
  /** A state signed by both participants. */
  signed: SignedState;
}

/**
 * Registers a state to start a dispute, or refutes the registered one with this newer
 * state while the challenge period runs (the contract compares versions, so it lands
 * whatever was registered before it). A final state resolves at once (for a ledger
 * channel it pays out, see `cooperativeClose`). Works for ledger and bidirectional virtual
 * channels; stream channels use `registerVoucher`.
 */
export async function register(client: ChainClient, args: RegisterArgs): Promise<TxResult> {
  return writeAdjudicator(client, 'register', [toContractParams(args.params, client), toContractState(args.signed.state), toContractSignatures(args.signed)]);
}
