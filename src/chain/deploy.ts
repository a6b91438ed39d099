import type { Address, Hex } from '../model/types.ts';
import { adjudicatorAbi, adjudicatorBytecode, testTokenAbi, testTokenBytecode } from './abi.generated.ts';
import { createChainClient, type ChainClient, type ChainClientOptions } from './client.ts';
import { ChainTransactionError } from './errors.ts';

const ZERO: Address = '0x0000000000000000000000000000000000000000';

async function deployed(client: ChainClient, hash: Hex): Promise<Address> {
  const receipt = await client.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== 'success' || !receipt.contractAddress) throw new ChainTransactionError(`deployment ${hash} failed`);
  return receipt.contractAddress.toLowerCase() as Address;
}

/** Deploys a new adjudicator and returns a client bound to it. */
export async function deployAdjudicator(opts: Omit<ChainClientOptions, 'adjudicator'>): Promise<ChainClient> {
  const deployer = createChainClient({ ...opts, adjudicator: ZERO });
  const hash = await deployer.walletClient.deployContract({ abi: adjudicatorAbi, bytecode: adjudicatorBytecode });
  return { ...deployer, adjudicator: await deployed(deployer, hash) };
}

/** Deploys the mintable test ERC20 (tests, benchmark, local demo). */
export async function deployTestToken(client: ChainClient): Promise<Address> {
  const hash = await client.walletClient.deployContract({ abi: testTokenAbi, bytecode: testTokenBytecode });
  return deployed(client, hash);
}
