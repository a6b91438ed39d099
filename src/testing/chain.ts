// Shared by the chain tests and the gas benchmark: channels between anvil accounts and
// states signed with src/crypto, as the off-chain side produces them.
import { Signer } from '../crypto/keys.ts';
import { channelId } from '../model/channelId.ts';
import { MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { domainSeparator, fromHex, stateDigest, voucherDigest } from '../model/hash.ts';
import { ChannelKind, NATIVE_ASSET, type Address, type Allocation, type Bytes32, type Params, type SignedState, type State, type SubAlloc } from '../model/types.ts';
import type { ChainClient } from '../chain/client.ts';
import { startDevnet, type Devnet } from '../chain/devnet.ts';
import { afterAll, beforeAll } from 'vitest';

export interface Party {
  signer: Signer;
  client: ChainClient;
  address: Address;
}

/** Anvil account i as a channel participant. */
export function party(devnet: Devnet, i: number): Party {
  const account = devnet.anvil.accounts[i];
  const client = devnet.clients[i];
  if (!account || !client) throw new RangeError(`no anvil account ${i}`);
  return { signer: new Signer(fromHex(account.privateKey)), client, address: account.address };
}

let nextNonce = 1n;

export function makeParams(devnet: Devnet, a: Party, b: Party, kind: ChannelKind = ChannelKind.Ledger, challengeDuration = MIN_CHALLENGE_DURATION): Params {
  return {
    chainId: devnet.deployer.chainId,
    adjudicator: devnet.deployer.adjudicator,
    participants: [a.address, b.address],
    challengeDuration,
    nonce: nextNonce++,
    kind,
  };
}

export function ethOutcome(b0: bigint, b1: bigint, locked: readonly SubAlloc[] = []): Allocation {
  return { assets: [NATIVE_ASSET], balances: [[b0, b1]], locked };
}

export function makeState(params: Params, version: bigint, outcome: Allocation, isFinal = false): State {
  return { channelId: channelId(params), version, outcome, isFinal };
}

/** Signs with the given signers, each in its participant slot. */
export function signState(params: Params, state: State, signers: readonly [Signer | null, Signer | null]): SignedState {
  const digest = stateDigest(domainSeparator({ chainId: params.chainId, adjudicator: params.adjudicator }), state);
  return { state, sigs: [signers[0]?.sign(digest) ?? null, signers[1]?.sign(digest) ?? null] };
}

export function signedBy(params: Params, state: State, a: Party, b: Party): SignedState {
  return signState(params, state, [a.signer, b.signer]);
}

export function signVoucher(params: Params, cumulative: bigint, payer: Party | Signer): Uint8Array {
  const signer = payer instanceof Signer ? payer : payer.signer;
  return signer.sign(voucherDigest(domainSeparator({ chainId: params.chainId, adjudicator: params.adjudicator }), channelId(params), cumulative));
}

export function subAlloc(vc: Params, balances: readonly bigint[], indexMap: readonly [number, number]): SubAlloc {
  return { id: channelId(vc), balances, indexMap };
}

export async function ethBalance(devnet: Devnet, address: Address): Promise<bigint> {
  return devnet.deployer.publicClient.getBalance({ address });
}

export const idOf = (params: Params): Bytes32 => channelId(params);

/** Starts a devnet for the calling test file and stops it afterwards. */
export function useDevnet(opts: Parameters<typeof startDevnet>[0] = {}): () => Devnet {
  let devnet: Devnet | undefined;
  beforeAll(async () => {
    devnet = await startDevnet(opts);
  });
  afterAll(async () => {
    await devnet?.stop();
  });
  return () => {
    if (!devnet) throw new Error('devnet not started');
    return devnet;
  };
}
