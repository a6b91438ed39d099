import { ChannelKind, type Params } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { WrongChannelKindError } from './errors.ts';
import { toContractParams, toContractSignature, type ContractSignature } from './encode.ts';
import { register, type RegisterArgs } from './register.ts';

/** Registers a bidirectional virtual channel's state signed by both of its participants. */
export async function registerVirtual(client: ChainClient, args: RegisterArgs): Promise<TxResult> {
  if (args.params.kind !== ChannelKind.Virtual) throw new WrongChannelKindError('not a bidirectional virtual channel');
  return register(client, args);
}

export interface RegisterVoucherArgs {
  params: Params;
  /** Cumulative amount the payer (participant 0) has signed for. */
  cumulative: bigint;
  /** The payer's voucher signature; may be null for a zero amount. */
  signature: Uint8Array | null;
}

const ZERO32 = `0x${'00'.repeat(32)}` as const;
const NO_SIGNATURE: ContractSignature = { r: ZERO32, s: ZERO32, v: 0 };

/**
 * Registers a stream channel's voucher, or raises a registered one (the contract compares
 * amounts, so a higher voucher lands whatever was registered before it). Submitted by the
 * payee, it resolves the channel at once, and may restate the registered amount to do so;
 * by anyone else, it starts the challenge period in which only a higher voucher can follow.
 */
export async function registerVoucher(client: ChainClient, args: RegisterVoucherArgs): Promise<TxResult> {
  if (args.params.kind !== ChannelKind.Stream) throw new WrongChannelKindError('not a stream channel');
  const sig = args.signature ? toContractSignature(args.signature) : NO_SIGNATURE;
  return writeAdjudicator(client, 'registerVoucher', [toContractParams(args.params, client), args.cumulative, sig]);
}
