import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentEvents } from '../src/client/agent.ts';
import { generatePrivateKey, Signer } from '../src/crypto/keys.ts';
import { silentLogger } from '../src/log.ts';
import { type Address, type Bytes32, ChannelKind } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork, type MemoryTransport } from '../src/transport/memory.ts';
import { Intermediary } from '../src/client/intermediary.ts';
import { SigningClock } from './signing.ts';
import { median, printTable, writeResults } from './table.ts';
import { LOCAL_CHAIN } from '../src/chain/anvil.ts';

// One gateway serving many devices, as an operator runs it: every device opens a ledger
// channel with the gateway, pairs of devices open stream virtual channels through it, pay
// and settle. All parties share this process (memory transport, no faults), so each
// phase's wall time is compared with the secp256k1 work it contains, measured here too.

export interface GatewayBenchOptions {
  /** Devices, paired payer → payee: an even number. */
  devices: number;
  /** Opens and settles in flight at once. */
  concurrency: number;
  /** Stream vouchers each payer sends before its virtual channel settles. */
  vouchers: number;
  /** One voucher's amount: the hotspot's default price of 100 KB (0.0001 ETH). */
  price: bigint;
}

const DEFAULTS: GatewayBenchOptions = {
  devices: Number(process.env.PICOPAY_BENCH_DEVICES ?? 200),
  concurrency: 50,
  vouchers: 10,
  price: 10n ** 14n,
};

const DEPOSIT = 10n ** 18n;
const WAIT_MS = 30_000;

// ---- parties ----

/** Every signature made by any party, counted per phase. */
interface SignCounter {
  signs: number;
}

class CountingSigner extends Signer {
  constructor(readonly counter: SignCounter) {
    super(generatePrivateKey());
  }

  override sign(digest: Uint8Array): Uint8Array {
    this.counter.signs++;
    return super.sign(digest);
  }
}

interface Party {
  address: Address;
  agent: Agent;
  store: ChannelStore;
  transport: MemoryTransport;
}

function startParty(network: MemoryNetwork, counter: SignCounter, store: ChannelStore, intermediary?: Intermediary): Party {
  const signer = new CountingSigner(counter);
  const transport = network.endpoint(signer.address);
  const policy = intermediary && { acceptUpdate: intermediary.decide };
  const agent = new Agent({ signer, transport, store, chain: LOCAL_CHAIN, policy });
  intermediary?.attach(agent);
  agent.start();
  return { address: signer.address, agent, store, transport };
}

/** The gateway's store keeps the agents' default, synchronous=FULL: it is what an operator runs. */
function startGateway(network: MemoryNetwork, counter: SignCounter, path: string): Party {
  const store = new ChannelStore(path);
  const intermediary = new Intermediary({ records: store.service, chain: LOCAL_CHAIN, holdTimeoutMs: WAIT_MS, logger: silentLogger });
  return startParty(network, counter, store, intermediary);
}

/** A device fsyncs on its own flash, not the gateway's disk: synchronous=NORMAL here, as in the tests. */
function startDevice(network: MemoryNetwork, counter: SignCounter, path: string): Party {
  return startParty(network, counter, new ChannelStore(path, { durability: 'normal' }));
}

async function stopParty(p: Party): Promise<void> {
  p.agent.stop();
  await p.transport.close();
  p.store.close();
}

// ---- helpers ----

/** Runs `work` on every item, at most `limit` at a time; results in the items' order. */
async function pool<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Resolves once `done()` holds, checked now and after each `event` of `agent`. */
function when(agent: Agent, event: keyof AgentEvents, done: () => boolean): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!done()) return;
      clearTimeout(timer);
      agent.off(event, check);
      resolve();
    };
    const timer = setTimeout(() => {
      agent.off(event, check);
      reject(new Error(`${agent.address}: no '${event}' completed the wait within ${WAIT_MS} ms`));
    }, WAIT_MS);
    agent.on(event, check);
  });
}

const knows = (p: Party, id: Bytes32): boolean => p.agent.channels().some((c) => c.id === id);

// ---- measurements ----

interface Phase {
  /** Operations completed: opens, vouchers, settlements. */
  count: number;
  ms: number;
  signs: number;
}

/** Times `work`, counting the signatures every party makes meanwhile. */
async function phase<T>(counter: SignCounter, count: number, work: () => Promise<T>): Promise<Phase & { result: T }> {
  const signs0 = counter.signs;
  const t0 = performance.now();
  const result = await work();
  return { count, ms: performance.now() - t0, signs: counter.signs - signs0, result };
}

/** Each signature made, and verified once by its recipient, over the phase's wall time. */
const cryptoShare = (p: Phase, clock: SigningClock): number => (p.signs * (clock.signUs + clock.verifyUs)) / (1000 * p.ms);

const perSec = (p: Phase): number => p.count / (p.ms / 1000);

/** heapUsed after a full collection, or null when this process has no global gc (no --expose-gc). */
function heapAfterGc(): number | null {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return null;
  gc();
  return process.memoryUsage().heapUsed;
}

/** The store's files: the WAL grows up to SQLite's auto-checkpoint whatever the channel count. */
function fileBytes(dbPath: string): { db: number; wal: number } {
  const wal = `${dbPath}-wal`;
  return { db: statSync(dbPath).size, wal: existsSync(wal) ? statSync(wal).size : 0 };
}

/** Phase 1: every device opens a ledger channel with the gateway; done once the gateway holds all of them open. */
async function openLedgers(gateway: Party, devices: Party[], o: GatewayBenchOptions): Promise<void> {
  await pool(devices, o.concurrency, (d) => d.agent.open(gateway.address, { balances: [[DEPOSIT, DEPOSIT]] }));
  // A device's open() resolves before the gateway holds the last signature of its side.
  await when(gateway.agent, 'opened', () => gateway.agent.channels().filter((c) => c.phase === 'open').length === devices.length);
}

type Pair = readonly [payer: Party, payee: Party];

/** A pair with the virtual channel it opened. */
interface Session {
  pair: Pair;
  vcId: Bytes32;
}

/** Phase 2: a stream virtual channel from payer to payee, timed until both sides are funded. */
async function openVirtual(gateway: Party, [payer, payee]: Pair, lock: bigint): Promise<{ vcId: Bytes32; ms: number }> {
  const t0 = performance.now();
  const vc = await payer.agent.openVirtual(payee.address, { gateway: gateway.address, kind: ChannelKind.Stream, balances: [[lock, 0n]] });
  await when(payee.agent, 'funded', () => knows(payee, vc.id) && payee.agent.isFunded(vc.id));
  return { vcId: vc.id, ms: performance.now() - t0 };
}

/** Phase 3a: the payer's vouchers, done once the payee holds the last one. */
async function stream({ pair: [payer, payee], vcId }: Session, o: GatewayBenchOptions): Promise<void> {
  for (let i = 0; i < o.vouchers; i++) payer.agent.payStream(vcId, o.price);
  const total = BigInt(o.vouchers) * o.price;
  await when(payee.agent, 'voucher', () => payee.agent.channel(vcId).voucher?.cumulative === total);
}

/** Phase 3b: the payee asks to settle (it is owed); done once both ledger channels took their funds back. */
async function settle({ pair: [payer, payee], vcId }: Session): Promise<void> {
  await payee.agent.settleVirtual(vcId);
  await when(payer.agent, 'settled', () => payer.agent.isSettled(vcId));
}

// ---- the bench ----

interface Run {
  ledger: Phase;
  virtual: Phase;
  vouchers: Phase;
  settles: Phase;
  virtualOpenMs: number[];
  heapDelta: number | null;
  store: { db: number; wal: number };
}

async function runPhases(gateway: Party, devices: Party[], gatewayPath: string, counter: SignCounter, clock: SigningClock, o: GatewayBenchOptions): Promise<Run> {
  new SigningClock().slice(20); // warms up the curve code, so that the first slice below is not the slowest
  const heapBefore = heapAfterGc();
  const ledger = await phase(counter, devices.length, () => openLedgers(gateway, devices, o));
  const heapAfter = heapAfterGc();
  clock.slice(100);

  const pairs: Pair[] = Array.from({ length: devices.length / 2 }, (_, i) => [devices[2 * i]!, devices[2 * i + 1]!]);
  const lock = BigInt(o.vouchers) * o.price;
  const virtual = await phase(counter, pairs.length, () => pool(pairs, o.concurrency, (p) => openVirtual(gateway, p, lock)));
  clock.slice(100);

  const sessions = pairs.map((pair, i): Session => ({ pair, vcId: virtual.result[i]!.vcId }));
  const vouchers = await phase(counter, pairs.length * o.vouchers, () => Promise.all(sessions.map((s) => stream(s, o))));
  clock.slice(100);
  const settles = await phase(counter, pairs.length, () => pool(sessions, o.concurrency, settle));
  clock.slice(100);

  return {
    ledger,
    virtual,
    vouchers,
    settles,
    virtualOpenMs: virtual.result.map((r) => r.ms),
    heapDelta: heapBefore === null || heapAfter === null ? null : heapAfter - heapBefore,
    store: fileBytes(gatewayPath),
  };
}

function metricsOf(r: Run, clock: SigningClock, o: GatewayBenchOptions): Record<string, number | null> {
  return {
    devices: o.devices,
    concurrency: o.concurrency,
    vouchersPerPayer: o.vouchers,
    ledgerOpensPerSec: perSec(r.ledger),
    virtualOpensPerSec: perSec(r.virtual),
    virtualOpenMsP50: median(r.virtualOpenMs),
    virtualOpenMsMax: Math.max(...r.virtualOpenMs),
    vouchersPerSec: perSec(r.vouchers),
    settlesPerSec: perSec(r.settles),
    signsPerLedgerOpen: r.ledger.signs / r.ledger.count,
    signsPerVirtualOpen: r.virtual.signs / r.virtual.count,
    signsPerVoucher: r.vouchers.signs / r.vouchers.count,
    signsPerSettle: r.settles.signs / r.settles.count,
    cryptoShareLedgerOpens: cryptoShare(r.ledger, clock),
    cryptoShareVirtualOpens: cryptoShare(r.virtual, clock),
    cryptoShareVouchers: cryptoShare(r.vouchers, clock),
    cryptoShareSettles: cryptoShare(r.settles, clock),
    signUs: clock.signUs,
    verifyUs: clock.verifyUs,
    gatewayStoreBytesPerLedgerChannel: (r.store.db + r.store.wal) / o.devices,
    gatewayDbBytes: r.store.db,
    gatewayWalBytes: r.store.wal,
    heapBytesPerLedgerChannel: r.heapDelta === null ? null : r.heapDelta / o.devices,
  };
}

function report(m: Record<string, number | null>, o: GatewayBenchOptions): void {
  const n = (key: string): number => m[key]!;
  const share = (key: string, per: string): string => `${n(key).toFixed(2)} (${n(per).toFixed(1)} sigs each)`;
  const kb = (key: string): string => (n(key) / 1024).toFixed(0);
  const heap = m.heapBytesPerLedgerChannel;
  printTable(
    `One gateway, ${o.devices} devices (one process, memory transport; gateway SQLite synchronous=FULL, devices NORMAL; ${o.concurrency} opens/settles in flight). ` +
      'cryptoShare = signs × (sign + verify µs) / wall µs: the share of a phase that is inherent secp256k1 work, all parties on one JS thread',
    ['metric', 'value', 'note'],
    [
      ['ledgerOpensPerSec', n('ledgerOpensPerSec'), `${o.devices} devices → gateway`],
      ['  cryptoShare', share('cryptoShareLedgerOpens', 'signsPerLedgerOpen'), ''],
      ['virtualOpensPerSec', n('virtualOpensPerSec'), `${o.devices / 2} disjoint pairs, stream kind`],
      ['  cryptoShare', share('cryptoShareVirtualOpens', 'signsPerVirtualOpen'), ''],
      ['virtualOpenMsP50', n('virtualOpenMsP50'), `until both sides funded, under load (max ${n('virtualOpenMsMax').toFixed(0)})`],
      ['vouchersPerSec', n('vouchersPerSec'), `${o.vouchers} per payer, all payers at once`],
      ['  cryptoShare', share('cryptoShareVouchers', 'signsPerVoucher'), ''],
      ['settlesPerSec', n('settlesPerSec'), 'until both sides isSettled'],
      ['  cryptoShare', share('cryptoShareSettles', 'signsPerSettle'), ''],
      ['signUs / verifyUs', `${n('signUs').toFixed(0)} / ${n('verifyUs').toFixed(0)}`, 'secp256k1, @noble/curves, this process'],
      ['gatewayStoreBytesPerLedgerChannel', n('gatewayStoreBytesPerLedgerChannel'), `db ${kb('gatewayDbBytes')} + WAL ${kb('gatewayWalBytes')} KB after the run (WAL: bounded, not per channel)`],
      ['heapBytesPerLedgerChannel', heap ?? 'null', heap === null ? 'needs --expose-gc (node --expose-gc --import tsx)' : 'gateway + device ends: the gateway uses at most this'],
    ],
  );
  console.log(`machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

export async function runGatewayBench(options: Partial<GatewayBenchOptions> = {}): Promise<Record<string, unknown>> {
  const o: GatewayBenchOptions = { ...DEFAULTS, ...options };
  if (!Number.isInteger(o.devices) || o.devices < 2 || o.devices % 2) throw new Error(`devices must be an even number ≥ 2, not ${o.devices}`);
  const dir = mkdtempSync(join(tmpdir(), 'picopay-bench-gateway-'));
  const loadAvg1mAtStart = loadavg()[0]!;
  const network = new MemoryNetwork();
  const counter: SignCounter = { signs: 0 };
  const gatewayPath = join(dir, 'gateway.db');
  const parties: Party[] = [];
  try {
    const gateway = startGateway(network, counter, gatewayPath);
    parties.push(gateway);
    const devices = Array.from({ length: o.devices }, (_, i) => startDevice(network, counter, join(dir, `device-${i}.db`)));
    parties.push(...devices);
    const clock = new SigningClock();
    const run = await runPhases(gateway, devices, gatewayPath, counter, clock, o);
    const metrics = metricsOf(run, clock, o);
    const results = {
      ...metrics,
      heapNote: metrics.heapBytesPerLedgerChannel === null ? 'null: no global gc in this process (run node with --expose-gc)' : 'heapUsed delta around the ledger opens, after gc; counts the gateway and the device end of each channel',
      cpus: cpus().length,
      loadAvg1mAtStart,
      loadAvg1mAtEnd: loadavg()[0]!,
      durability: 'gateway SQLite WAL synchronous=FULL; devices synchronous=NORMAL',
      transport: 'in-process MemoryNetwork, no faults',
    };
    writeResults('gateway', results);
    report(metrics, o);
    return results;
  } finally {
    await Promise.allSettled(parties.map(stopParty));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runGatewayBench();
  process.exit(0);
}
