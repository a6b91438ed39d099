import { FinalStateError } from '../errors.ts';
import { ChannelKind } from '../model/types.ts';
import type { ChainClient, TxResult } from './client.ts';
import { WrongChannelKindError } from './errors.ts';
import { register, type RegisterArgs } from './register.ts';

/** Closes a ledger channel with a final state signed by both; pays both in the same transaction. */
export async function cooperativeClose(client: ChainClient, args: RegisterArgs): Promise<TxResult> {
  if (!args.signed.state.isFinal) throw new FinalStateError('cooperative close needs a final state');
  if (args.params.kind !== ChannelKind.Ledger) throw new WrongChannelKindError('only ledger channels close with a payout');
  return register(client, args);
}
