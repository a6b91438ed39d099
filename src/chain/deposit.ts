import { erc20Abi } from 'viem';
import { NATIVE_ASSET, type Address, type Bytes32 } from '../model/types.ts';
import { adjudicatorAbi } from './abi.generated.ts';
import { sendContractCall, writeAdjudicator, type ChainClient, type TxResult } from './client.ts';

export interface DepositArgs {
  channelId: Bytes32;
  asset: Address;
  amount: bigint;
}

export interface DepositManyArgs {
  asset: Address;
  deposits: readonly { channelId: Bytes32; amount: bigint }[];
}

/** Funds one channel. ERC20 deposits need an allowance (see `approveDeposits`). */
export async function deposit(client: ChainClient, args: DepositArgs): Promise<TxResult> {
  const value = args.asset === NATIVE_ASSET ? args.amount : undefined;
  return writeAdjudicator(client, 'deposit', [args.channelId, args.asset, args.amount], value);
}

export interface DepositManyResult extends TxResult {
  /** Channels the contract did not fund (concluded, or holdings full); their amounts came back. */
  skipped: Bytes32[];
}

/** Funds many channels in one transaction (one token transfer for ERC20). */
export async function depositMany(client: ChainClient, args: DepositManyArgs): Promise<DepositManyResult> {
  const total = args.deposits.reduce((sum, d) => sum + d.amount, 0n);
  const value = args.asset === NATIVE_ASSET ? total : undefined;
  const tx = await writeAdjudicator(client, 'depositMany', [args.deposits.map((d) => d.channelId), args.asset, args.deposits.map((d) => d.amount)], value);
  const logs = await client.publicClient.getContractEvents({ address: client.adjudicator, abi: adjudicatorAbi, eventName: 'DepositSkipped', fromBlock: tx.blockNumber, toBlock: tx.blockNumber, strict: true });
  return { ...tx, skipped: logs.filter((l) => l.transactionHash === tx.hash).map((l) => l.args.channelId) };
}

/** Raises the adjudicator's ERC20 allowance to at least `amount`; no transaction if it already is. */
export async function approveDeposits(client: ChainClient, token: Address, amount: bigint): Promise<TxResult | null> {
  const allowance = await client.publicClient.readContract({ address: token, abi: erc20Abi, functionName: 'allowance', args: [client.account, client.adjudicator] });
  if (allowance >= amount) return null;
  return sendContractCall(client, { address: token, abi: erc20Abi, functionName: 'approve', args: [client.adjudicator, amount] });
}
