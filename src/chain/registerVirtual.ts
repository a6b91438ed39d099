import { channelId } from '../model/channelId.ts';
import { ChannelKind, type Params } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { WrongChannelKindError } from './errors.ts';
import { NO_DISPUTE, toContractParams, toContractSignature, type ContractSignature, type Dispute } from './encode.ts';
import { register, type RegisterArgs } from './register.ts';
import { readDispute, type LogRange } from './read.ts';

/** Registers a bidirectional virtual channel's state signed by both of its participants. */
export async function registerVirtual(client: ChainClient, args: RegisterArgs): Promise<TxResult> {
  if (args.params.kind !== ChannelKind.Virtual) throw new WrongChannelKindError('not a bidirectional virtual channel');
  return register(client, args);
}

export interface RegisterVoucherArgs extends LogRange {
  params: Params;
  /** Cumulative amount the payer (participant 0) has signed for. */
  cumulative: bigint;
  /** The payer's voucher signature; may be null for a zero amount. */
  signature: Uint8Array | null;
  /** The current registration, if any; read from events when omitted. */
  registered?: Dispute | null;
}

const NO_SIGNATURE: ContractSignature = { r: NO_DISPUTE.outcome, s: NO_DISPUTE.outcome, v: 0 };

/**
 * Registers a stream channel's voucher, or raises a registered one. Submitted by the
 * payee, it resolves the channel at once; by anyone else, it starts the challenge period
 * in which only a higher voucher can follow.
 */
export async function registerVoucher(client: ChainClient, args: RegisterVoucherArgs): Promise<TxResult> {
  if (args.params.kind !== ChannelKind.Stream) throw new WrongChannelKindError('not a stream channel');
  const registered = args.registered === undefined ? await readDispute(client, channelId(args.params), args) : args.registered;
  const sig = args.signature ? toContractSignature(args.signature) : NO_SIGNATURE;
  return writeAdjudicator(client, 'registerVoucher', [toContractParams(args.params, client), registered ?? NO_DISPUTE, args.cumulative, sig]);
}
