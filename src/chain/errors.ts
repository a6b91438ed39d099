// The adjudicator's custom errors, decoded from reverts into one typed error class, plus
// the few failures that happen before or around a transaction.
import { BaseError, ContractFunctionRevertedError, decodeErrorResult, HttpRequestError, TimeoutError, type ContractErrorArgs, type ContractErrorName, type Hex } from 'viem';
import { PicopayError } from '../errors.ts';
import { adjudicatorAbi } from './abi.generated.ts';

export type AdjudicatorErrorName = ContractErrorName<typeof adjudicatorAbi>;
export type AdjudicatorErrorArgs<N extends AdjudicatorErrorName> = ContractErrorArgs<typeof adjudicatorAbi, N>;

/** The contract refused a call; `errorName` and `args` are its custom error, typed from the ABI. */
export class AdjudicatorRevertError<N extends AdjudicatorErrorName = AdjudicatorErrorName> extends PicopayError {
  readonly code = 'CHAIN_REVERT';
  constructor(readonly errorName: N, readonly args: AdjudicatorErrorArgs<N>, options?: { cause?: unknown }) {
    super(`adjudicator reverted: ${errorName}(${(args as readonly unknown[]).map(String).join(', ')})`, options);
  }
}

/** A transaction failed for a reason other than a decodable revert (RPC, gas, unknown data). */
export class ChainTransactionError extends PicopayError {
  readonly code = 'CHAIN_TX';
}

/** A transaction was mined and reverted: the chain changed between its estimate and its block (another sender acted first). */
export class TransactionRevertedError extends ChainTransactionError {}

/** Params name another chain or another adjudicator than the client talks to. */
export class ChainMismatchError extends PicopayError {
  readonly code = 'CHAIN_MISMATCH';
}

/** The action does not apply to this kind of channel. */
export class WrongChannelKindError extends PicopayError {
  readonly code = 'CHAIN_WRONG_KIND';
}

/** No registration of the channel was found on-chain. */
export class NotRegisteredError extends PicopayError {
  readonly code = 'CHAIN_NOT_REGISTERED';
}

export function isAdjudicatorRevert<N extends AdjudicatorErrorName>(err: unknown, name: N): err is AdjudicatorRevertError<N> {
  return err instanceof AdjudicatorRevertError && err.errorName === name;
}

/** Whether `err` is the RPC endpoint not answering (down, refusing, timing out): worth trying again, unlike a revert. */
export function isRpcUnreachable(err: unknown): boolean {
  return err instanceof BaseError && err.walk((e) => e instanceof HttpRequestError || e instanceof TimeoutError) !== null;
}

/** Turns whatever viem threw into a typed error; returns non-viem errors unchanged. */
export function decodeChainError(err: unknown): Error {
  if (err instanceof PicopayError || !(err instanceof BaseError)) return err instanceof Error ? err : new Error(String(err));
  const reverted = err.walk((e) => e instanceof ContractFunctionRevertedError);
  if (reverted instanceof ContractFunctionRevertedError && reverted.data?.errorName) {
    const { errorName, args } = reverted.data;
    return new AdjudicatorRevertError(errorName as AdjudicatorErrorName, (args ?? []) as never, { cause: err });
  }
  const data = findRevertData(err);
  if (data) {
    try {
      const decoded = decodeErrorResult({ abi: adjudicatorAbi, data });
      return new AdjudicatorRevertError(decoded.errorName, (decoded.args ?? []) as never, { cause: err });
    } catch {
      // not one of ours
    }
  }
  return new ChainTransactionError(err.shortMessage, { cause: err });
}

function findRevertData(err: BaseError): Hex | undefined {
  let found: Hex | undefined;
  err.walk((e) => {
    const data = (e as { data?: unknown }).data;
    if (typeof data === 'string' && data.startsWith('0x') && data.length >= 10) found = data as Hex;
    return false;
  });
  return found;
}

/**
 * An on-chain settlement cannot go on from what this party holds: the channel is
 * registered or concluded at a state it does not have (its store is not its newest), or a
 * virtual channel it locks is unknown to it.
 */
export class SettlementError extends PicopayError {
  readonly code = 'CHAIN_SETTLEMENT';
}
