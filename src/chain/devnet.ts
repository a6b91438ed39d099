// A local chain ready to use: anvil, a deployed adjudicator and test token, clients for
// anvil's funded accounts, and time travel. For tests, the benchmark and the local demo.
import { createTestClient, http } from 'viem';
import type { Address } from '../model/types.ts';
import { startAnvil, type Anvil, type AnvilOptions } from './anvil.ts';
import { withAccount, type ChainClient } from './client.ts';
import { deployAdjudicator, deployTestToken } from './deploy.ts';

export interface Devnet {
  anvil: Anvil;
  /** Client of account 0, which deployed the contracts. */
  deployer: ChainClient;
  /** A client per anvil account (index 0 is the deployer). */
  clients: ChainClient[];
  token: Address;
  /** Moves the chain's clock forward and mines a block. */
  increaseTime(seconds: bigint | number): Promise<void>;
  mine(blocks?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startDevnet(opts: AnvilOptions & { pollingInterval?: number } = {}): Promise<Devnet> {
  const anvil = await startAnvil(opts);
  try {
    const pollingInterval = opts.pollingInterval ?? 20;
    const deployer = await deployAdjudicator({ rpcUrl: anvil.rpcUrl, chainId: anvil.chainId, privateKey: anvil.accounts[0]!.privateKey, pollingInterval });
    const token = await deployTestToken(deployer);
    const clients = anvil.accounts.map((a) => withAccount(deployer, a.privateKey));
    const test = createTestClient({ mode: 'anvil', transport: http(anvil.rpcUrl) });
    return {
      anvil,
      deployer,
      clients,
      token,
      async increaseTime(seconds) {
        await test.increaseTime({ seconds: Number(seconds) });
        await test.mine({ blocks: 1 });
      },
      async mine(blocks = 1) {
        await test.mine({ blocks });
      },
      stop: () => anvil.stop(),
    };
  } catch (err) {
    await anvil.stop();
    throw err;
  }
}
