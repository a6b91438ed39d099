// Starts a local anvil node (from the @foundry-rs/anvil npm package) on 127.0.0.1 and a
// free port, for tests, the benchmark and the local demo.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { mnemonicToAccount } from 'viem/accounts';
import { toHex } from 'viem';
import type { Address, Hex } from '../model/types.ts';

/** anvil's default mnemonic: its accounts are funded with `balance` ETH each. */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk';

export interface AnvilOptions {
  chainId?: number;
  /** Number of funded accounts (default 10). */
  accounts?: number;
  /** ETH per account (default 10000). */
  balance?: number;
  /** Seconds between blocks; default: a block per transaction. */
  blockTime?: number;
  /** Milliseconds to wait for the node to answer (default 15000). */
  startTimeoutMs?: number;
}

export interface AnvilAccount {
  address: Address;
  privateKey: Hex;
}

export interface Anvil {
  rpcUrl: string;
  chainId: number;
  port: number;
  accounts: AnvilAccount[];
  stop(): Promise<void>;
}

/** The platform binary, so that stop() signals anvil itself rather than the npm wrapper. */
function anvilBinary(): string {
  const require = createRequire(import.meta.url);
  try {
    const pkg = require.resolve(`@foundry-rs/anvil-${process.platform}-${process.arch === 'x64' ? 'amd64' : process.arch}/package.json`);
    const bin = join(dirname(pkg), 'bin', process.platform === 'win32' ? 'anvil.exe' : 'anvil');
    if (existsSync(bin)) return bin;
  } catch {
    // fall through to the wrapper script
  }
  return join(dirname(require.resolve('@foundry-rs/anvil/package.json')), 'bin.mjs');
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitReady(rpcUrl: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`anvil exited with code ${child.exitCode}`);
    try {
      const res = await fetch(rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`anvil did not answer on ${rpcUrl} within ${timeoutMs} ms`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolveStop) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolveStop();
    });
    child.kill('SIGTERM');
  });
}

/** Nodes started by this process, killed if it exits without stopping them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function launch(args: string[], timeoutMs: number): Promise<{ child: ChildProcess; rpcUrl: string; port: number }> {
  const port = await freePort();
  const child = spawn(anvilBinary(), ['--host', '127.0.0.1', '--port', String(port), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const rpcUrl = `http://127.0.0.1:${port}`;
  try {
    await waitReady(rpcUrl, child, timeoutMs);
    return { child, rpcUrl, port };
  } catch (err) {
    await stopChild(child);
    throw new Error(`${(err as Error).message}${stderr ? `: ${stderr}` : ''}`);
  }
}

/** The chain id anvil runs with unless told otherwise. */
export const LOCAL_CHAIN_ID = 31337;

/**
 * A fresh anvil's chain, with the adjudicator where its first account's first
 * transaction deploys it: what protocol tests, benches and the offline demo bind
 * channels to.
 */
export const LOCAL_CHAIN = { chainId: BigInt(LOCAL_CHAIN_ID), adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3' as Address };

export async function startAnvil(opts: AnvilOptions = {}): Promise<Anvil> {
  const chainId = opts.chainId ?? LOCAL_CHAIN_ID;
  const accountCount = opts.accounts ?? 10;
  const args = ['--chain-id', String(chainId), '--accounts', String(accountCount), '--balance', String(opts.balance ?? 10_000), '--mnemonic', ANVIL_MNEMONIC, '--silent'];
  if (opts.blockTime !== undefined) args.push('--block-time', String(opts.blockTime));
  // The free port can be taken between probing and binding; try again on another.
  let launched: Awaited<ReturnType<typeof launch>> | undefined;
  for (let attempt = 1; !launched; attempt++) {
    try {
      launched = await launch(args, opts.startTimeoutMs ?? 15_000);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
  const { child, rpcUrl, port } = launched;
  const accounts = Array.from({ length: accountCount }, (_, i) => {
    const account = mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: i });
    const key = account.getHdKey().privateKey;
    if (!key) throw new Error('no private key derived');
    return { address: account.address.toLowerCase() as Address, privateKey: toHex(key) };
  });
  return { rpcUrl, chainId, port, accounts, stop: () => stopChild(child) };
}
