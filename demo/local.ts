import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Hex } from 'viem';
import { ANVIL_MNEMONIC, createChainClient, deposit, type Devnet, readHoldings } from '../src/chain/index.ts';
import { writeKeystore } from '../src/crypto/keystore.ts';
import { Signer } from '../src/crypto/keys.ts';
import { printTable } from '../bench/table.ts';
import { formatEth } from '../src/cli/units.ts';
import { type Address, type Bytes32, NATIVE_ASSET } from '../src/model/types.ts';
import { startOrigin } from '../device/hotspot/origin.ts';
import { PicopayProcess } from './processes.ts';
import { mnemonicToAccount } from 'viem/accounts';
import { toHex } from '../src/model/hash.ts';

// `npm start`: a whole picopay network on this machine. The gateway (with a local anvil
// chain and its embedded MQTT broker), a hotspot and a client run as separate processes.
// The client downloads from a local origin through the hotspot's metered proxy, paying
// per 100 KB with stream vouchers in a virtual channel; then the virtual channel settles,
// both ledger channels close on-chain, and the balances are checked.

export interface LocalRunOptions {
  downloadBytes: number;
  /** A chain already running (anvil with the contracts): the gateway uses it instead of starting its own. */
  devnet?: Devnet;
  /** A broker already running: the gateway uses it instead of its embedded one. */
  mqttUrl?: string;
  /** With mqttUrl, a Mosquitto with dynamic security: the gateway issues the devices' logins as this admin. */
  mqttAdmin?: { username: string; password: string };
  /** Hooks for tests that disturb the run (a gateway outage). */
  hooks?: {
    afterVirtualOpen?(ctl: GatewayControl): Promise<void>;
    afterDownload?(ctl: GatewayControl): Promise<void>;
  };
  /** Print progress lines (default true). */
  verbose?: boolean;
  /** Remove the run's folder (keys, stores) at the end; npm start keeps it to look at. */
  cleanup?: boolean;
  deposit: bigint;
  lock: bigint;
  price: bigint;
  /** The gateway's fee per virtual channel, paid by each device when its side is funded. */
  virtualFee: bigint;
  unitBytes: number;
  /** Child processes' log level (stderr). */
  logLevel: string;
}

export interface LocalRunResult {
  ok: boolean;
  paid: bigint;
  bytes: number;
  checks: [string, boolean][];
}

/** Lets a test stop and restart the gateway process mid-run. */
export interface GatewayControl {
  kill(): Promise<void>;
  restart(): Promise<void>;
}

const DEFAULTS: LocalRunOptions = {
  downloadBytes: 4_000_000,
  deposit: 10n ** 17n,
  lock: 5n * 10n ** 16n,
  price: 10n ** 14n,
  virtualFee: 10n ** 13n,
  unitBytes: 102_400,
  logLevel: 'warn',
};

export async function runLocal(options: Partial<LocalRunOptions> = {}): Promise<LocalRunResult> {
  const o = { ...DEFAULTS, ...options };
  const dir = mkdtempSync(join(tmpdir(), 'picopay-local-'));
  const env = { PICOPAY_LOG: o.logLevel, PICOPAY_PASSWORD: '', PICOPAY_MQTT_ADMIN: o.mqttAdmin?.password ?? '' };
  const say = (s: string): void => void (o.verbose !== false && process.stdout.write(`${s}\n`));
  const procs: PicopayProcess[] = [];
  const origin = await startOrigin();
  try {
    say(`picopay local network in ${dir}`);
    const gatewayArgs = ['gateway', '--data-dir', join(dir, 'gateway'), '--hold-timeout-ms', '30000', '--virtual-fee', formatWei(o.virtualFee)];
    if (o.mqttUrl) gatewayArgs.push('--mqtt-url', o.mqttUrl);
    if (o.mqttAdmin) gatewayArgs.push('--mqtt-admin-username', o.mqttAdmin.username, '--mqtt-admin-password-env', 'PICOPAY_MQTT_ADMIN');
    if (o.devnet) {
      const d = o.devnet;
      gatewayArgs.push('--rpc-url', d.anvil.rpcUrl, '--chain-id', String(d.anvil.chainId), '--adjudicator', d.deployer.adjudicator);
      // The gateway pays gas: give its key (made here, as an operator would) some ETH.
      const key = Signer.random();
      writeKeystore(join(dir, 'gateway', 'key.json'), key, '', { scryptN: 1 << 12 });
      const hash = await d.deployer.walletClient.sendTransaction({ to: key.address, value: 10n ** 20n });
      await d.deployer.publicClient.waitForTransactionReceipt({ hash });
    }
    let gateway = new PicopayProcess('gateway', gatewayArgs, { env });
    procs.push(gateway);
    const gw = await gateway.next('ready');
    const control: GatewayControl = {
      kill: () => gateway.stop('SIGKILL'),
      restart: async () => {
        gateway = new PicopayProcess('gateway', gatewayArgs, { env });
        procs.push(gateway);
        await gateway.next('ready');
      },
    };
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify(gw));
    say(`  gateway  ${gw.address as string}  chain ${gw.rpcUrl as string}  broker ${gw.mqttUrl as string}  fee ${formatEth(o.virtualFee)} per virtual channel and side`);

    // The devices' owner funds their side of the ledger channels from anvil's account 1.
    const owner = mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: 1 });
    const ownerKey = toHex(owner.getHdKey().privateKey!) as Hex;
    const chain = createChainClient({ rpcUrl: gw.rpcUrl as string, chainId: gw.chainId as number, privateKey: ownerKey, adjudicator: gw.adjudicator as Address, pollingInterval: 50 });
    const balanceOf = (a: Address): Promise<bigint> => chain.publicClient.getBalance({ address: a });
    const startBlock = await chain.publicClient.getBlockNumber();
    const before = new Map<string, bigint>();
    const snapshot = async (label: string, a: Address): Promise<void> => void before.set(label, await balanceOf(a));
    const accounts: [string, Address][] = [
      ['gateway', gw.address as Address],
      ['owner (funds devices)', owner.address.toLowerCase() as Address],
      ['adjudicator contract', gw.adjudicator as Address],
    ];
    for (const [label, a] of accounts) await snapshot(label, a);

    const common = [...(o.mqttAdmin ? ['--mqtt-enroll'] : []), '--gateway-info', join(dir, 'gateway.json'), '--deposit', formatWei(o.deposit), '--gateway-deposit', formatWei(o.deposit), '--unit-bytes', String(o.unitBytes), '--price', formatWei(o.price)];
    const fundDevice = async (p: PicopayProcess, label: string): Promise<{ address: Address; channel: Bytes32 }> => {
      const ledger = await p.next('ledger');
      const address = ledger.address as Address;
      accounts.push([label, address]);
      await snapshot(label, address);
      await deposit(chain, { channelId: ledger.channel as Bytes32, asset: NATIVE_ASSET, amount: o.deposit });
      say(`  ${label.padEnd(8)} ${address}  ledger channel ${(ledger.channel as string).slice(0, 18)}… funded with ${formatEth(o.deposit)}`);
      return { address, channel: ledger.channel as Bytes32 };
    };

    // The origin runs on this machine: the operator allows it, as nothing local is reachable by default.
    const hotspot = new PicopayProcess('hotspot', ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--close-after-settle', '--allow-upstream', new URL(origin.url).host, ...common], { env });
    procs.push(hotspot);
    const hs = await fundDevice(hotspot, 'hotspot');
    const ready = await hotspot.next('ready');
    say(`  hotspot proxy ${ready.proxyUrl as string}: ${o.unitBytes / 1024} KB units at ${formatEth(o.price)}`);

    const url = `${origin.url}/bytes/${o.downloadBytes}`;
    const client = new PicopayProcess(
      'client',
      ['device', '--role', 'payer', '--data-dir', join(dir, 'client'), '--hotspot', hs.address, '--proxy-url', ready.proxyUrl as string, '--download', url, '--lock', formatWei(o.lock), '--close-after', ...common],
      { env },
    );
    procs.push(client);
    const cl = await fundDevice(client, 'client');
    const vc = await client.next('virtual');
    say(`  virtual channel ${(vc.channel as string).slice(0, 18)}… open through the gateway, client locked ${formatEth(o.lock)}`);
    say(`  downloading ${(o.downloadBytes / 1e6).toFixed(1)} MB from ${url} through the hotspot…`);
    await o.hooks?.afterVirtualOpen?.(control);
    const done = await client.next('downloaded', 600_000);
    await o.hooks?.afterDownload?.(control);
    const paid = BigInt(done.paid as string);
    say(`  downloaded ${done.bytes as number} bytes (sha256 ${(done.sha256 as string).slice(0, 16)}…), ${done.unitsPaid as number} units, ${done.vouchers as number} vouchers, paid ${formatEth(paid)}`);
    await client.next('settled');
    await hotspot.next('settled');
    say('  virtual channel settled into both ledger channels');
    await client.next('closed');
    await hotspot.next('closed');
    say('  both ledger channels final; the gateway closes them on-chain…');
    for (const id of [cl.channel, hs.channel]) await waitFor(async () => (await readHoldings(chain, id, NATIVE_ASSET)).concluded, 60_000, `channel ${id} concluded`);

    // The gateway's gas, to tell its payouts from its fees.
    let gatewayGas = 0n;
    const end = await chain.publicClient.getBlockNumber();
    for (let n = startBlock + 1n; n <= end; n++) {
      const block = await chain.publicClient.getBlock({ blockNumber: n, includeTransactions: true });
      for (const tx of block.transactions) {
        if (tx.from.toLowerCase() !== gw.address) continue;
        const r = await chain.publicClient.getTransactionReceipt({ hash: tx.hash });
        gatewayGas += r.gasUsed * r.effectiveGasPrice;
      }
    }
    const after = new Map<string, bigint>();
    for (const [label, a] of accounts) after.set(label, await balanceOf(a));
    const delta = (label: string): bigint => after.get(label)! - before.get(label)!;

    if (o.verbose !== false) printTable('On-chain balances', ['account', 'before', 'after', 'change'], accounts.map(([label]) => [label, formatEth(before.get(label)!), formatEth(after.get(label)!), formatEth(delta(label))]));
    const checks: [string, boolean][] = [
      [`client got back its deposit minus what it paid and the fee (${formatEth(o.deposit - paid - o.virtualFee)})`, delta('client') === o.deposit - paid - o.virtualFee],
      [`hotspot got its deposit plus what it earned, minus the fee (${formatEth(o.deposit + paid - o.virtualFee)})`, delta('hotspot') === o.deposit + paid - o.virtualFee],
      [`gateway got back what it deposited plus two fees (change = ${formatEth(2n * o.virtualFee)} − gas)`, delta('gateway') === 2n * o.virtualFee - gatewayGas],
      ['owner paid the two device deposits (and gas)', delta('owner (funds devices)') <= -2n * o.deposit],
      ['adjudicator holds nothing for these channels', delta('adjudicator contract') === 0n],
      ['paid = units × price', paid === BigInt(done.unitsPaid as number) * o.price],
    ];
    say('\nChecks');
    for (const [what, ok] of checks) say(`  ${ok ? 'ok  ' : 'FAIL'} ${what}`);
    const ok = checks.every(([, c]) => c);
    say(ok ? '\nEverything adds up.' : '\nSomething does not add up.');
    return { ok, paid, bytes: done.bytes as number, checks };
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await origin.close();
    if (o.cleanup) rmSync(dir, { recursive: true, force: true });
  }
}

function formatWei(wei: bigint): string {
  return `${wei}wei`;
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runLocal({ downloadBytes: Number(process.env.PICOPAY_DOWNLOAD_BYTES ?? DEFAULTS.downloadBytes) });
  process.exit(result.ok ? 0 : 1);
}
