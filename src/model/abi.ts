import * as AbiParameters from 'ox/AbiParameters';

// ABI layouts shared with contracts/: the contract hashes the same encodings, and the
// conformance test checks that both sides agree byte for byte.

export const paramsAbi = AbiParameters.from([
  'uint256 chainId',
  'address adjudicator',
  'address[2] participants',
  'uint64 challengeDuration',
  'uint256 nonce',
  'uint8 kind',
]);

/** The outcome commits to its locked sub-allocations through a Merkle root (see locked.ts). */
export const outcomeAbi = AbiParameters.from(['address[] assets', 'uint256[2][] balances', 'bytes32 lockedRoot']);

export const subAllocAbi = AbiParameters.from(['bytes32 id', 'uint256[] balances', 'uint8[2] indexMap']);

export const stateStructAbi = AbiParameters.from([
  'bytes32 typeHash',
  'bytes32 channelId',
  'uint64 version',
  'bytes32 outcomeHash',
  'bool isFinal',
]);

export const voucherStructAbi = AbiParameters.from(['bytes32 typeHash', 'bytes32 channelId', 'uint256 cumulative']);

export const controlStructAbi = AbiParameters.from(['bytes32 typeHash', 'bytes32 subject', 'uint256 version', 'uint8 messageType', 'uint8 reason']);

export const domainAbi = AbiParameters.from([
  'bytes32 typeHash',
  'bytes32 nameHash',
  'bytes32 versionHash',
  'uint256 chainId',
  'address verifyingContract',
]);

export const nonceSharesAbi = AbiParameters.from(['bytes32 shareA', 'bytes32 shareB']);

export { AbiParameters };

export const openStructAbi = AbiParameters.from([
  'bytes32 typeHash',
  'bytes32 share',
  'address[2] participants',
  'uint64 challengeDuration',
  'uint8 kind',
  'bytes32 outcomeHash',
]);
