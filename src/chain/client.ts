// A chain client: a viem public client for reads and logs, a wallet client for one
// account, and the adjudicator's address. Every action takes one of these.
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
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
import { ChainTransactionError, decodeChainError } from './errors.ts';

export interface ChainClient extends Deployment {
  publicClient: PublicClient<Transport, Chain>;
  walletClient: WalletClient<Transport, Chain, Account>;
  account: Address;
}

export interface ChainClientOptions {
  rpcUrl: string;
  chainId: number;
  privateKey: Hex;
  adjudicator: Address;
  /** Milliseconds between polls for receipts and blocks (default 1000; use ~50 on anvil). */
  pollingInterval?: number;
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

/** Sends an adjudicator call and waits for its receipt; reverts become typed errors. */
export async function writeAdjudicator<const F extends WriteName>(client: ChainClient, functionName: F, args: WriteArgs<F>, value?: bigint): Promise<TxResult> {
  let hash: Hex;
  try {
    hash = await client.walletClient.writeContract({ address: client.adjudicator, abi: adjudicatorAbi, functionName, args, value } as never);
  } catch (err) {
    throw decodeChainError(err);
  }
  return waitForSuccess(client, hash);
}

export async function waitForSuccess(client: ChainClient, hash: Hex): Promise<TxResult> {
  const receipt = await client.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new ChainTransactionError(`transaction ${hash} reverted`);
  return { hash, blockNumber: receipt.blockNumber, gasUsed: receipt.gasUsed };
}
