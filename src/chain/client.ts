// A chain client: a viem public client for reads and logs, a wallet client for one
// account, and the adjudicator's address. Every action takes one of these.
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  encodeFunctionData,
  type Abi,
  type Account,
  type Chain,
  type ContractFunctionArgs,
  type ContractFunctionName,
  type PublicClient,
  type Transport,
  type WalletClient,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import type { Address, Hex } from '../model/types.ts';
import { adjudicatorAbi } from './abi.generated.ts';
import type { Deployment } from './encode.ts';
import { decodeChainError } from './errors.ts';
import { sendReliably, type SendOptions } from './sender.ts';

export interface ChainClient extends Deployment {
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  account: Address;
  /** How transactions are replaced when stuck and journalled for restarts. */
  send: SendOptions;
  /** The adjudicator's deployment block: event reads start there. */
  fromBlock?: bigint;
}

export interface ChainClientOptions {
  rpcUrl: string;
  chainId: number;
  privateKey: Hex;
  adjudicator: Address;
  /** Milliseconds between polls for receipts and blocks (default 1000; use ~50 on anvil). */
  pollingInterval?: number;
  send?: SendOptions;
  /** The adjudicator's deployment block: event reads start there (default 0). */
  fromBlock?: bigint;
}

export function chainFor(chainId: number, rpcUrl: string): Chain {
  return defineChain({
    id: chainId,
    name: `chain-${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

export function createChainClient(opts: ChainClientOptions): ChainClient {
  const chain = chainFor(opts.chainId, opts.rpcUrl);
  const transport = http(opts.rpcUrl);
  const pollingInterval = opts.pollingInterval ?? 1000;
  const account = privateKeyToAccount(opts.privateKey);
  return {
    chainId: BigInt(opts.chainId),
    adjudicator: opts.adjudicator.toLowerCase() as Address,
    account: account.address.toLowerCase() as Address,
    publicClient: createPublicClient({ chain, transport, pollingInterval }),
    walletClient: createWalletClient({ chain, transport, account, pollingInterval }),
    send: opts.send ?? {},
    fromBlock: opts.fromBlock,
  };
}

/** The same chain and adjudicator, another signing account. */
export function withAccount(client: ChainClient, privateKey: Hex): ChainClient {
  const account = privateKeyToAccount(privateKey);
  const walletClient = createWalletClient({
    chain: client.walletClient.chain,
    transport: http(client.walletClient.transport.url as string),
    account,
    pollingInterval: client.walletClient.pollingInterval,
  });
  return { ...client, account: account.address.toLowerCase() as Address, walletClient };
}

export interface TxResult {
  hash: Hex;
  blockNumber: bigint;
  gasUsed: bigint;
}

type WriteName = ContractFunctionName<typeof adjudicatorAbi, 'nonpayable' | 'payable'>;
type WriteArgs<F extends WriteName> = ContractFunctionArgs<typeof adjudicatorAbi, 'nonpayable' | 'payable', F>;

/** Sends an adjudicator call and waits for it to be mined; reverts become typed errors. */
export function writeAdjudicator<const F extends WriteName>(client: ChainClient, functionName: F, args: WriteArgs<F>, value?: bigint): Promise<TxResult> {
  return sendContractCall(client, { address: client.adjudicator, abi: adjudicatorAbi, functionName, args: args as readonly unknown[], value });
}

export interface ContractCall {
  address: Address;
  abi: Abi;
  functionName: string;
  args: readonly unknown[];
  value?: bigint;
}

/** Estimates (so a revert is decoded before anything is sent), then sends with `client.send`. */
export async function sendContractCall(client: ChainClient, call: ContractCall): Promise<TxResult> {
  try {
    const gas = await client.publicClient.estimateContractGas({ ...call, account: client.walletClient.account } as never);
    const data = encodeFunctionData(call as never);
    // Headroom: state may change before inclusion, and a payout push must never run short.
    return await sendReliably(client, { to: call.address, data, value: call.value, gas: (gas * 6n) / 5n }, client.send);
  } catch (err) {
    throw decodeChainError(err);
  }
}
