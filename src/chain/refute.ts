import { channelId } from '../model/channelId.ts';
import type { Params, SignedState } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { toContractParams, toContractSignatures, toContractState, type Dispute } from './encode.ts';
import { NotRegisteredError } from './errors.ts';
import { readDispute, type LogRange } from './read.ts';

export interface RefuteArgs extends LogRange {
  params: Params;
  /** A newer state signed by both participants. */
  signed: SignedState;
  /** The registration being refuted; read from events when omitted. */
  registered?: Dispute;
}

/** Replaces a registered state with a newer one within the challenge period. */
export async function refute(client: ChainClient, args: RefuteArgs): Promise<TxResult> {
  const registered = args.registered ?? (await readDispute(client, channelId(args.params), args));
  if (!registered) throw new NotRegisteredError(`channel ${channelId(args.params)} is not registered`);
  return writeAdjudicator(client, 'refute', [toContractParams(args.params, client), registered, toContractState(args.signed.state), toContractSignatures(args.signed)]);
}
