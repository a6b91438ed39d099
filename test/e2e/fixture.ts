import { afterAll, beforeAll } from 'vitest';
import { PicopayProcess } from '../../demo/processes.ts';
import { startOrigin } from '../../device/hotspot/origin.ts';
import { startDevnet, type Devnet } from '../../src/chain/index.ts';
import { writeKeystore } from '../../src/crypto/keystore.ts';
import { Signer } from '../../src/crypto/keys.ts';
import type { ChannelRecord } from '../../src/channel/record.ts';
import type { Address, Bytes32 } from '../../src/model/types.ts';
import { ChannelStore } from '../../src/store/store.ts';

// What the real-process tests of a picopay network share: a devnet and an origin for the
// describe block, processes stopped after it, and funded keystores.

export const WEI = (n: bigint): string => `${n}wei`;

export interface ProcessNetwork {
  devnet(): Devnet;
  origin(): Awaited<ReturnType<typeof startOrigin>>;
  /** A picopay command as its own process (empty keystore password, warnings only), stopped after the block; `entry` runs another script (the device bundle). */
  start(name: string, args: string[], entry?: string): PicopayProcess;
  /** Sends `to` 100 ETH from the devnet's deployer. */
  fund(to: Address): Promise<void>;
  /** A fresh key at `path` (empty password), funded; returns the path. */
  keystore(path: string): Promise<string>;
  /** The flags every process needs to reach the devnet's chain. */
  chainArgs(): string[];
}

export function processNetwork(): ProcessNetwork {
  let devnet: Devnet;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  const procs: PicopayProcess[] = [];
  beforeAll(async () => {
    devnet = await startDevnet();
    origin = await startOrigin();
  }, 60_000);
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await origin?.close();
    await devnet?.stop();
  });
  const fund = async (to: Address): Promise<void> => {
    await devnet.deployer.publicClient.waitForTransactionReceipt({ hash: await devnet.deployer.walletClient.sendTransaction({ to, value: 10n ** 20n }) });
  };
  return {
    devnet: () => devnet,
    origin: () => origin,
    start: (name, args, entry) => {
      const p = new PicopayProcess(name, args, { env: { PICOPAY_LOG: process.env.E2E_LOG ?? 'warn', PICOPAY_PASSWORD: '' }, entry });
      procs.push(p);
      return p;
    },
    fund,
    keystore: async (path) => {
      const key = Signer.random();
      writeKeystore(path, key, '', { scryptN: 1 << 10 });
      await fund(key.address);
      return path;
    },
    chainArgs: () => ['--rpc-url', devnet.anvil.rpcUrl, '--chain-id', String(devnet.anvil.chainId), '--adjudicator', devnet.deployer.adjudicator],
  };
}

/** A channel as a device's store holds it, live or retired (the device may be running: SQLite lets a reader in). */
export function readChannel(path: string, id: Bytes32): ChannelRecord | undefined {
  const store = new ChannelStore(path);
  try {
    return store.loadChannel(id);
  } finally {
    store.close();
  }
}
