import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleDevice, DEVICE_BUNDLE } from '../device/bundle.ts';
import { startOrigin } from '../device/hotspot/origin.ts';
import { deposit, startDevnet } from '../src/chain/index.ts';
import { writeKeystore } from '../src/crypto/keystore.ts';
import { Signer } from '../src/crypto/keys.ts';
import { aliasOf } from '../src/channel/record.ts';
import { fragment } from '../src/transport/ble/framing.ts';
import { SEAL_BYTES } from '../src/transport/ble/session.ts';
import { encodeMessage } from '../src/wire/codec.ts';
import { MessageType } from '../src/wire/messages.ts';
import { NATIVE_ASSET } from '../src/model/types.ts';
import { sampleUpdate } from './core.ts';
import { median, printTable, writeResults } from './table.ts';

// `npm run bench:device`: the device agent as a Pi-class board would run it, beside a bare
// `node -e` in the same run: start-up to its `ledger` line (key, store, broker, its ledger
// channel with a local gateway) and RSS then, from the lean bundle and through tsx; the
// peak RSS of a payer and a hotspot through 1,000 payments; and
// the bytes and BLE packets of one voucher and of one update (with its acceptance) as the
// BLE link carries them. Targets: RSS ≤ 1.5 × bare node, start-up ≤ 3 ×, one packet each.

const RUNS = 3;

interface Sample {
  ms: number;
  rssKb: number;
}

/** The process's resident set now (VmRSS), or at its peak so far (VmHWM), in KB. */
function rssKb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return Number(line?.replace(/\D+/g, '') ?? 0);
}

/** A child's JSON event lines, awaited by name in any order. */
function events(child: ChildProcess): (event: string) => Promise<Record<string, unknown>> {
  const seen: Record<string, unknown>[] = [];
  const waiting: { event: string; resolve: (line: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    const i = waiting.findIndex((w) => w.event === parsed.event);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(parsed);
    else seen.push(parsed);
  });
  return (event) => {
    const i = seen.findIndex((l) => l.event === event);
    if (i >= 0) return Promise.resolve(seen.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} line in 180 s`)), 180_000);
      waiting.push({ event, resolve: (l) => (clearTimeout(timer), resolve(l)) });
    });
  };
}

const PAYMENTS = 1000;
const UNIT_BYTES = 1024;

/**
 * Peak RSS of a payer and its hotspot, both from the bundle, through a download of 1,000
 * paid units (one voucher each) on a devnet, beside the gateway as its own process.
 */
async function paymentsRss(dir: string): Promise<{ payerPeakRssKb: number; hotspotPeakRssKb: number; paymentsPerSec: number }> {
  const devnet = await startDevnet();
  const origin = await startOrigin();
  const children: ChildProcess[] = [];
  const run = (args: string[]) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, PICOPAY_LOG: 'silent', PICOPAY_PASSWORD: '' } });
    children.push(child);
    return { child, next: events(child) };
  };
  try {
    const key = Signer.random();
    writeKeystore(join(dir, 'gw', 'key.json'), key, '', { scryptN: 1 << 10 });
    await devnet.deployer.publicClient.waitForTransactionReceipt({ hash: await devnet.deployer.walletClient.sendTransaction({ to: key.address, value: 10n ** 20n }) });
    const chain = ['--rpc-url', devnet.anvil.rpcUrl, '--chain-id', String(devnet.anvil.chainId), '--adjudicator', devnet.deployer.adjudicator];
    const gateway = run([join(import.meta.dirname, '..', 'bin', 'picopay.js'), 'gateway', '--data-dir', join(dir, 'gw'), ...chain]);
    const info = await gateway.next('ready');
    const common = ['--gateway', info.address as string, '--mqtt-url', info.mqttUrl as string, ...chain, '--deposit', '0.1', '--gateway-deposit', '0.1', '--price', '1000000000000wei', '--unit-bytes', String(UNIT_BYTES)];
    const fund = async (next: (e: string) => Promise<Record<string, unknown>>) => {
      const ledger = (await next('ledger')).channel as `0x${string}`;
      await deposit(devnet.clients[6]!, { channelId: ledger, asset: NATIVE_ASSET, amount: 10n ** 17n });
    };
    const hotspot = run([DEVICE_BUNDLE, '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--allow-upstream', new URL(origin.url).host, ...common]);
    await fund(hotspot.next);
    const ready = await hotspot.next('ready');
    const payer = run([DEVICE_BUNDLE, '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', ready.address as string, '--proxy-url', ready.proxyUrl as string, '--download', `${origin.url}/bytes/${PAYMENTS * UNIT_BYTES}`, '--lock', '0.01', ...common]);
    await fund(payer.next);
    await payer.next('virtual');
    const started = performance.now();
    await payer.next('downloaded');
    const ms = performance.now() - started;
    return { payerPeakRssKb: rssKb(payer.child.pid!, 'VmHWM'), hotspotPeakRssKb: rssKb(hotspot.child.pid!, 'VmHWM'), paymentsPerSec: (PAYMENTS * 1000) / ms };
  } finally {
    for (const child of children.reverse()) child.kill('SIGKILL');
    await origin.close();
    await devnet.stop();
  }
}

/** Spawns node with `args` and resolves at the first stdout line `accept` takes, with the time it took. */
function untilLine(args: string[], accept: (line: string) => boolean, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; line: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, ...env } });
    const timer = setTimeout(() => (child.kill('SIGKILL'), reject(new Error(`${args.join(' ')}: no line in 60 s`))), 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!accept(line)) return;
      clearTimeout(timer);
      resolve({ child, line, ms: performance.now() - started });
    });
  });
}

/** Start-up to the `ready` event line (bare node: to its one line, its RSS) and RSS then; the process is killed after. */
async function sample(args: string[], ready: string | null, env: NodeJS.ProcessEnv = {}): Promise<Sample> {
  const { child, line, ms } = await untilLine(args, (l) => (ready === null ? /^\d+$/.test(l) : l.includes(`"event":"${ready}"`)), env);
  const rss = ready === null ? Number(line) : rssKb(child.pid!);
  child.kill('SIGKILL');
  return { ms, rssKb: rss };
}

async function medianOf(runs: number, take: () => Promise<Sample>): Promise<Sample> {
  const samples: Sample[] = [];
  for (let i = 0; i < runs; i++) samples.push(await take());
  return { ms: median(samples.map((s) => s.ms)), rssKb: median(samples.map((s) => s.rssKb)) };
}

export async function runDeviceBench(): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'picopay-device-bench-'));
  await bundleDevice();
  const bin = join(import.meta.dirname, '..', 'bin', 'picopay.js');
  const started = await untilLine([bin, 'gateway', '--data-dir', join(dir, 'gateway')], (l) => l.includes('"event":"ready"'), { PICOPAY_LOG: 'warn', PICOPAY_PASSWORD: '' });
  const gateway = started.child;
  try {
    const info = JSON.parse(started.line) as Record<string, unknown>;
    writeFileSync(join(dir, 'gateway.json'), JSON.stringify(info));
    // The device's key exists already (its first start writes it): start-up is a restart's.
    writeKeystore(join(dir, 'device', 'key.json'), Signer.random(), '');
    const deviceArgs = ['--role', 'hotspot', '--data-dir', join(dir, 'device'), '--gateway-info', join(dir, 'gateway.json'), '--status-url', info.httpUrl as string, '--deposit', '0.01', '--gateway-deposit', '0.01'];
    const env = { PICOPAY_LOG: 'silent', PICOPAY_PASSWORD: '' };
    const bare = await medianOf(RUNS, () => sample(['-e', 'process.stdout.write(String(Math.round(process.memoryUsage().rss / 1024)) + "\\n")'], null));
    const bundled = await medianOf(RUNS, () => sample([DEVICE_BUNDLE, ...deviceArgs], 'ledger', env));
    const tsx = await medianOf(RUNS, () => sample([bin, 'device', ...deviceArgs], 'ledger', env));
    const paying = await paymentsRss(dir);
    const alias = aliasOf(`0x${'ab'.repeat(32)}`);
    const voucher = encodeMessage({ type: MessageType.Voucher, alias, cumulative: 123_456_789_000_000n, sig: new Uint8Array(65) });
    // A bidirectional payment: the proposal and its acceptance.
    const { update, accept } = sampleUpdate();
    // What the BLE link carries for a message: its type byte and the session's counter and tag, fragmented.
    const onLink = (m: Uint8Array, mtu: number) => fragment(new Uint8Array(1 + SEAL_BYTES + m.length), 0, mtu);
    const results = {
      bareNodeStartMs: bare.ms,
      bareNodeRssKb: bare.rssKb,
      bundleStartToLedgerMs: bundled.ms,
      bundleRssKb: bundled.rssKb,
      tsxStartToLedgerMs: tsx.ms,
      tsxRssKb: tsx.rssKb,
      startRatio: bundled.ms / bare.ms,
      rssRatio: bundled.rssKb / bare.rssKb,
      ...paying,
      payingRssRatio: paying.payerPeakRssKb / bare.rssKb,
      voucherBytes: voucher.length,
      voucherLinkBytes: onLink(voucher, 247)[0]!.length,
      voucherPacketsAtMtu247: onLink(voucher, 247).length,
      voucherPacketsAtMtu23: onLink(voucher, 23).length,
      updateBytes: update.length + accept.length,
      updatePacketsAtMtu247: onLink(update, 247).length + onLink(accept, 247).length,
      updatePacketsAtMtu23: onLink(update, 23).length + onLink(accept, 23).length,
    };
    const path = writeResults('device', results);
    printTable(`Device agent (median of ${RUNS}; ${path})`, ['measure', 'value', 'target'], [
      ['bare node: start (ms)', results.bareNodeStartMs, ''],
      ['bare node: RSS (KB)', results.bareNodeRssKb, ''],
      ['bundle: start to ledger (ms)', results.bundleStartToLedgerMs, ''],
      ['bundle: RSS (KB)', results.bundleRssKb, ''],
      ['tsx: start to ledger (ms)', results.tsxStartToLedgerMs, ''],
      ['tsx: RSS (KB)', results.tsxRssKb, ''],
      ['start ratio (bundle / bare)', results.startRatio, '≤ 3'],
      ['RSS ratio (bundle / bare)', results.rssRatio, '≤ 1.5'],
      [`payer: peak RSS over ${PAYMENTS} payments (KB)`, results.payerPeakRssKb, ''],
      [`hotspot: peak RSS over ${PAYMENTS} payments (KB)`, results.hotspotPeakRssKb, ''],
      ['payments per second (vouchers, one per 1 KB)', results.paymentsPerSec, ''],
      ['paying RSS ratio (payer peak / bare)', results.payingRssRatio, '≤ 1.5'],
      ['voucher bytes (on the BLE link)', `${results.voucherBytes} (${results.voucherLinkBytes})`, ''],
      ['voucher BLE packets, MTU 247', results.voucherPacketsAtMtu247, '1'],
      ['voucher BLE packets, MTU 23', results.voucherPacketsAtMtu23, ''],
      ['update + acceptance bytes', results.updateBytes, ''],
      ['update BLE packets (each way one), MTU 247', results.updatePacketsAtMtu247, '2'],
      ['update BLE packets, MTU 23', results.updatePacketsAtMtu23, ''],
    ]);
    return results;
  } finally {
    gateway.kill('SIGTERM');
    await new Promise((resolve) => gateway.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runDeviceBench();
  process.exit(0);
}
