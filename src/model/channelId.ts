import { AbiParameters, nonceSharesAbi, paramsAbi } from './abi.ts';
import { fromHex, keccak, keccakHex, toHex } from './hash.ts';
import type { Bytes32, Params } from './types.ts';

/** keccak256(abi.encode(params)): binds chain id, adjudicator, participants, challenge, nonce, kind. */
export function channelId(params: Params): Bytes32 {
  return keccakHex(
    AbiParameters.encode(paramsAbi, [
      params.chainId,
      params.adjudicator,
      params.participants,
      params.challengeDuration,
      params.nonce,
      params.kind,
    ]),
  );
}

/** The channel nonce: keccak256 of both sides' 32-byte random shares. */
export function nonceFromShares(shareA: Uint8Array, shareB: Uint8Array): bigint {
  const encoded = AbiParameters.encode(nonceSharesAbi, [toHex(shareA), toHex(shareB)]);
  return BigInt(toHex(keccak(fromHex(encoded))));
}
