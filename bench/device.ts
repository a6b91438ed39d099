import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleDevice, DEVICE_BUNDLE } from '../device/bundle.ts';
import { writeKeystore } from '../src/crypto/keystore.ts';
import { Signer } from '../src/crypto/keys.ts';
import { aliasOf } from '../src/channel/record.ts';
import { fragment } from '../src/transport/ble/framing.ts';
import { SEAL_BYTES } from '../src/transport/ble/session.ts';
import { encodeMessage } from '../src/wire/codec.ts';
import { MessageType } from '../src/wire/messages.ts';
import { median, printTable, writeResults } from './table.ts';

// `npm run bench:device`: the device agent as a Pi-class board would run it, beside a bare
// `node -e` in the same run: start-up to its `ledger` line (key, store, broker, its ledger
// channel with a local gateway) and RSS then, from the lean bundle and through tsx; and
// the bytes and BLE packets of one voucher and of one update (with its acceptance) as the
// BLE link carries them. Targets: RSS ≤ 1.5 × bare node, start-up ≤ 3 ×, one packet each.

const RUNS = 3;

interface Sample {
  ms: number;
  rssKb: number;
}

function rssKb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.replace(/\D+/g, '') ?? 0);
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
    const alias = aliasOf(`0x${'ab'.repeat(32)}`);
    const voucher = encodeMessage({ type: MessageType.Voucher, alias, cumulative: 123_456_789_000_000n, sig: new Uint8Array(65) });
    // A bidirectional payment: the proposal and its acceptance, with realistic balances (wei of 0.01 ETH locks).
    const update = encodeMessage({ type: MessageType.Update, alias, version: 1234n, balances: [[9_876_543_210_000_000n, 123_456_790_000_000n]], locked: [], isFinal: false, sig: new Uint8Array(65) });
    const accept = encodeMessage({ type: MessageType.UpdateAccept, alias, version: 1234n, sig: new Uint8Array(65) });
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
