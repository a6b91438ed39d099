// Misbehaving counterparts for the attack and fuzz tests: an ERC20 that switches between
// honest and hostile behaviour, and receiver code placed at a participant's address.
import { createTestClient, encodeFunctionData, http, type Hex } from 'viem';
import { hostileReceiverAbi, hostileReceiverBytecode, hostileTokenAbi, hostileTokenBytecode } from '../../src/chain/abi.generated.ts';
import { adjudicatorAbi } from '../../src/chain/abi.generated.ts';
import type { ChainClient } from '../../src/chain/client.ts';
import type { Devnet } from '../../src/chain/devnet.ts';
import { toContractParams, toContractSignatures, toContractState } from '../../src/chain/encode.ts';
import type { Address, Params, SignedState } from '../../src/model/types.ts';

export const TokenMode = { Honest: 0, ReturnFalse: 1, FeeOnTransfer: 2, Reenter: 3, BurnGas: 4, NoReturnValue: 5 } as const;
export type TokenMode = (typeof TokenMode)[keyof typeof TokenMode];

export const ReceiverMode = { Revert: 0, BurnGas: 1, Reenter: 2 } as const;
export type ReceiverMode = (typeof ReceiverMode)[keyof typeof ReceiverMode];

async function mined(client: ChainClient, hash: Hex): Promise<void> {
  const receipt = await client.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`);
}

export interface HostileToken {
  address: Address;
  setMode(mode: TokenMode): Promise<void>;
  /** Mints to `to` and lets the adjudicator pull it (an unlimited allowance from `to`'s client). */
  fund(owner: ChainClient, amount: bigint): Promise<void>;
  /** What a re-entering transfer calls first. */
  setReentry(target: Address, data: Hex): Promise<void>;
  setBlocked(account: Address, blocked: boolean): Promise<void>;
  balanceOf(account: Address): Promise<bigint>;
}

export async function deployHostileToken(client: ChainClient): Promise<HostileToken> {
  const hash = await client.walletClient.deployContract({ abi: hostileTokenAbi, bytecode: hostileTokenBytecode });
  const receipt = await client.publicClient.waitForTransactionReceipt({ hash });
  const address = receipt.contractAddress!.toLowerCase() as Address;
  const write = async (c: ChainClient, functionName: string, args: readonly unknown[]): Promise<void> =>
    mined(c, await c.walletClient.writeContract({ address, abi: hostileTokenAbi, functionName, args } as never));
  return {
    address,
    setMode: (mode) => write(client, 'setMode', [mode]),
    fund: async (owner, amount) => {
      await write(owner, 'mint', [owner.account, amount]);
      await write(owner, 'approve', [owner.adjudicator, (1n << 256n) - 1n]);
    },
    setReentry: (target, data) => write(client, 'setReentry', [target, data]),
    setBlocked: (account, blocked) => write(client, 'setBlocked', [account, blocked]),
    balanceOf: (account) => client.publicClient.readContract({ address, abi: hostileTokenAbi, functionName: 'balanceOf', args: [account] }),
  };
}

/**
 * Puts HostileReceiver code at `at` (a participant's address, whose key still signs), so
 * that ETH sent to it reverts, burns all gas, or calls `reentry` first.
 */
export async function placeReceiver(d: Devnet, at: Address, mode: ReceiverMode, reentry?: { target: Address; data: Hex }): Promise<void> {
  const hash = await d.deployer.walletClient.deployContract({ abi: hostileReceiverAbi, bytecode: hostileReceiverBytecode, args: [mode] });
  const receipt = await d.deployer.publicClient.waitForTransactionReceipt({ hash });
  const code = await d.deployer.publicClient.getCode({ address: receipt.contractAddress! });
  const test = createTestClient({ mode: 'anvil', transport: http(d.anvil.rpcUrl) });
  await test.setCode({ address: at, bytecode: code! });
  if (reentry) {
    const data = encodeFunctionData({ abi: hostileReceiverAbi, functionName: 'setReentry', args: [reentry.target, reentry.data] });
    await mined(d.deployer, await d.deployer.walletClient.sendTransaction({ to: at, data }));
  }
}

/** A token deployed by `client`, which holds `amount` of it and lets the adjudicator pull it. */
export async function fundedToken(client: ChainClient, amount: bigint): Promise<HostileToken> {
  const token = await deployHostileToken(client);
  await token.fund(client, amount);
  return token;
}

/** Calldata of `register(signed)`: what a re-entering token or receiver calls. */
export function registerCalldata(client: ChainClient, params: Params, signed: SignedState): Hex {
  return encodeFunctionData({ abi: adjudicatorAbi, functionName: 'register', args: [toContractParams(params, client), toContractState(signed.state), toContractSignatures(signed)] });
}
