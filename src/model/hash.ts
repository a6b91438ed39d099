import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { AbiParameters, controlStructAbi, domainAbi, openStructAbi, outcomeAbi, stateStructAbi, voucherStructAbi } from './abi.ts';
import { lockedRoot } from './locked.ts';
import type { Allocation, Address, Bytes32, Hex, State } from './types.ts';

// Signatures follow EIP-712: the domain binds the chain id and the adjudicator's address,
// so a signature is worthless on another chain or deployment, and each message kind has
// its own type hash, so a voucher signature can never pass for a state signature.

export const EIP712_NAME = 'picopay';
export const EIP712_VERSION = '1';

export function keccak(data: Uint8Array): Uint8Array {
  return keccak_256(data);
}

export function keccakHex(data: Uint8Array | Hex): Bytes32 {
  return toHex(keccak_256(typeof data === 'string' ? hexToBytes(data.slice(2)) : data));
}

export function toHex(bytes: Uint8Array): Hex {
  return `0x${bytesToHex(bytes)}`;
}

export function fromHex(hex: Hex | string): Uint8Array {
  return hexToBytes(hex.startsWith('0x') ? hex.slice(2) : hex);
}

const typeHash = (s: string): Bytes32 => toHex(keccak_256(utf8ToBytes(s)));

export const DOMAIN_TYPEHASH = typeHash('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)');
export const STATE_TYPEHASH = typeHash('State(bytes32 channelId,uint64 version,bytes32 outcomeHash,bool isFinal)');
export const VOUCHER_TYPEHASH = typeHash('Voucher(bytes32 channelId,uint256 cumulative)');
export const CONTROL_TYPEHASH = typeHash('Control(bytes32 subject,uint256 version,uint8 messageType,uint8 reason)');

export interface Domain {
  chainId: bigint;
  adjudicator: Address;
}

export function domainSeparator(domain: Domain): Uint8Array {
  const encoded = AbiParameters.encode(domainAbi, [
    DOMAIN_TYPEHASH,
    typeHash(EIP712_NAME),
    typeHash(EIP712_VERSION),
    domain.chainId,
    domain.adjudicator,
  ]);
  return keccak(fromHex(encoded));
}

export function outcomeHash(outcome: Allocation): Bytes32 {
  return keccakHex(AbiParameters.encode(outcomeAbi, [outcome.assets, outcome.balances, lockedRoot(outcome.locked)]));
}

export function stateStructHash(state: State): Uint8Array {
  const encoded = AbiParameters.encode(stateStructAbi, [
    STATE_TYPEHASH,
    state.channelId,
    state.version,
    outcomeHash(state.outcome),
    state.isFinal,
  ]);
  return keccak(fromHex(encoded));
}

export function voucherStructHash(channelId: Bytes32, cumulative: bigint): Uint8Array {
  return keccak(fromHex(AbiParameters.encode(voucherStructAbi, [VOUCHER_TYPEHASH, channelId, cumulative])));
}

/** keccak256(0x1901 ‖ domainSeparator ‖ structHash), the value that is signed. */
export function typedDataDigest(separator: Uint8Array, structHash: Uint8Array): Uint8Array {
  const buf = new Uint8Array(66);
  buf[0] = 0x19;
  buf[1] = 0x01;
  buf.set(separator, 2);
  buf.set(structHash, 34);
  return keccak(buf);
}

export function stateDigest(separator: Uint8Array, state: State): Uint8Array {
  return typedDataDigest(separator, stateStructHash(state));
}

export function voucherDigest(separator: Uint8Array, channelId: Bytes32, cumulative: bigint): Uint8Array {
  return typedDataDigest(separator, voucherStructHash(channelId, cumulative));
}

export const OPEN_TYPEHASH = typeHash(
  'Open(bytes32 share,address[2] participants,uint64 challengeDuration,uint8 kind,bytes32 outcomeHash)',
);

export interface OpenTerms {
  share: Bytes32;
  participants: readonly [Address, Address];
  challengeDuration: bigint;
  kind: number;
  outcome: Allocation;
}

/** What a proposer signs to open a channel: the peer learns who asks, and a replay is known by its share. */
export function openDigest(separator: Uint8Array, terms: OpenTerms): Uint8Array {
  const encoded = AbiParameters.encode(openStructAbi, [
    OPEN_TYPEHASH,
    terms.share,
    terms.participants,
    terms.challengeDuration,
    terms.kind,
    outcomeHash(terms.outcome),
  ]);
  return typedDataDigest(separator, keccak(fromHex(encoded)));
}

/**
 * A message that makes its receiver stop or act without carrying a state (a refusal, a
 * close request): `subject` is the channel id, or an open proposal's share; `version` the
 * refused proposal's (0 where none applies). Off-chain only; the type hash keeps it apart
 * from every kind the contract accepts.
 */
export interface Control {
  subject: Bytes32;
  version: bigint;
  messageType: number;
  reason: number;
}

export function controlDigest(separator: Uint8Array, c: Control): Uint8Array {
  const encoded = AbiParameters.encode(controlStructAbi, [CONTROL_TYPEHASH, c.subject, c.version, c.messageType, c.reason]);
  return typedDataDigest(separator, keccak(fromHex(encoded)));
}
