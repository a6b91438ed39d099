// Converts src/model values into the adjudicator's calldata structs. Params lose chain id
// and adjudicator (the contract supplies its own), so they are checked here instead.
import { lockedRoot } from '../model/locked.ts';
import type { Address, Allocation, Hex, Params, SignedState, State, SubAlloc } from '../model/types.ts';
import { toHex } from '../model/hash.ts';
import { ChainMismatchError } from './errors.ts';

export interface ContractParams {
  participants: readonly [Address, Address];
  challengeDuration: bigint;
  nonce: bigint;
  kind: number;
}

export interface ContractOutcome {
  assets: readonly Address[];
  balances: readonly (readonly [bigint, bigint])[];
  lockedRoot: Hex;
}

export interface ContractState {
  version: bigint;
  outcome: ContractOutcome;
  isFinal: boolean;
}

export interface ContractSignature {
  r: Hex;
  s: Hex;
  v: number;
}

export interface ContractSubAlloc {
  id: Hex;
  balances: readonly bigint[];
  indexMap: readonly [number, number];
}

/** A registration, as the contract stores it and emits it in `Registered`. */
export interface Dispute {
  version: bigint;
  timeout: bigint;
  /** The outcome hash, or for a stream channel the cumulative amount as bytes32. */
  outcome: Hex;
}

export interface Deployment {
  chainId: bigint;
  adjudicator: Address;
}

export function toContractParams(params: Params, deployment: Deployment): ContractParams {
  if (params.chainId !== deployment.chainId) {
    throw new ChainMismatchError(`channel is bound to chain ${params.chainId}, client is on ${deployment.chainId}`);
  }
  if (params.adjudicator.toLowerCase() !== deployment.adjudicator.toLowerCase()) {
    throw new ChainMismatchError(`channel is bound to adjudicator ${params.adjudicator}, client uses ${deployment.adjudicator}`);
  }
  return { participants: params.participants, challengeDuration: params.challengeDuration, nonce: params.nonce, kind: params.kind };
}

export function toContractOutcome(outcome: Allocation): ContractOutcome {
  return { assets: outcome.assets, balances: outcome.balances, lockedRoot: lockedRoot(outcome.locked) };
}

export function toContractState(state: State): ContractState {
  return { version: state.version, outcome: toContractOutcome(state.outcome), isFinal: state.isFinal };
}

/** 65-byte r ‖ s ‖ v into the contract's struct. */
export function toContractSignature(sig: Uint8Array): ContractSignature {
  if (sig.length !== 65) throw new RangeError(`signature must be 65 bytes, got ${sig.length}`);
  return { r: toHex(sig.subarray(0, 32)), s: toHex(sig.subarray(32, 64)), v: sig[64]! };
}

export function toContractSignatures(signed: SignedState): readonly [ContractSignature, ContractSignature] {
  const [a, b] = signed.sigs;
  if (!a || !b) throw new RangeError('state is not signed by both participants');
  return [toContractSignature(a), toContractSignature(b)];
}

export function toContractSubAlloc(sub: SubAlloc): ContractSubAlloc {
  return { id: sub.id, balances: sub.balances, indexMap: [sub.indexMap[0], sub.indexMap[1]] };
}

export function cumulativeOf(dispute: Dispute): bigint {
  return BigInt(dispute.outcome);
}
