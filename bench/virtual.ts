import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { aliasOf } from '../src/channel/record.ts';
import { Agent } from '../src/client/agent.ts';
import { Signer } from '../src/crypto/keys.ts';
import { silentLogger } from '../src/log.ts';
import { type Address, type Bytes32, ChannelKind } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { type EmbeddedBroker, startEmbeddedBroker } from '../src/transport/broker.ts';
import { MqttTransport } from '../src/transport/mqtt.ts';
import { encodeMessage } from '../src/wire/codec.ts';
import { MessageType } from '../src/wire/messages.ts';
import { Intermediary } from '../src/client/intermediary.ts';
import { SigningClock } from './signing.ts';
import { median, printTable, writeResults } from './table.ts';
import { CountingTransport, emptyTrace } from './workers/counting.ts';
import { DeviceProcess } from './workers/handle.ts';
import { LOCAL_CHAIN } from '../src/chain/anvil.ts';
import { STREAM_WINDOW } from './workers/protocol.ts';

// Virtual channels over MQTT: a payer and a payee, each in its own OS process, pay each
// other through a virtual channel that a gateway (in this process, with the embedded
// broker) funded from their ledger channels. The signing bounds are measured here in
// slices between slices of payments, while the devices are idle, so that machine load
// weighs on both alike.

export interface VirtualBenchOptions {
  /** Stream vouchers: slices × vouchers per slice (after a warm-up slice). */
  streamSlices: number;
  streamSlice: number;
  /** Bidirectional updates: slices × updates per slice (after a warm-up slice). */
  bidiSlices: number;
  bidiSlice: number;
  /** Virtual-channel opens timed for openLatencyMsP50. */
  opens: number;
  /** One payment: the hotspot's default price of 100 KB (0.0001 ETH). */
  price: bigint;
  /** Stream payee group commit: fsync every this many vouchers (as `picopay device` does: 10 units). */
  fsyncEveryVouchers: number;
  /** Write the device processes' V8 CPU profiles here. */
  cpuProfileDir?: string;
}

const DEFAULTS: VirtualBenchOptions = {
  streamSlices: 16,
  streamSlice: 400,
  bidiSlices: 16,
  bidiSlice: 50,
  opens: 10,
  price: 10n ** 14n,
  fsyncEveryVouchers: 10,
};

const DEPOSIT = 100n * 10n ** 18n;
const OPEN_LOCK = 10n ** 15n;

interface Gateway {
  address: Address;
  agent: Agent;
  transport: CountingTransport;
  stop(): Promise<void>;
}

interface Net {
  gateway: Gateway;
  payer: DeviceProcess;
  payee: DeviceProcess;
  payerAddress: Address;
  payeeAddress: Address;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- the network ----

async function startGateway(brokerUrl: string, storePath: string): Promise<Gateway> {
  const signer = Signer.random();
  const store = new ChannelStore(storePath);
  const intermediary = new Intermediary({ records: store.service, chain: LOCAL_CHAIN, holdTimeoutMs: 30_000, logger: silentLogger });
  const mqtt = new MqttTransport({ url: brokerUrl, self: signer.address, signer });
  const transport = new CountingTransport(mqtt);
  const agent = new Agent({ signer, transport, store, chain: LOCAL_CHAIN, policy: { acceptUpdate: intermediary.decide } });
  intermediary.attach(agent);
  agent.start();
  await mqtt.connect();
  return {
    address: signer.address,
    agent,
    transport,
    stop: async () => {
      agent.stop();
      await mqtt.close();
      store.close();
    },
  };
}

/** Both devices connected, each with an open ledger channel with the gateway. */
async function startDevices(net: Pick<Net, 'gateway' | 'payer' | 'payee'>, brokerUrl: string, dir: string, o: VirtualBenchOptions): Promise<Net> {
  const common = { brokerUrl, gateway: net.gateway.address, deposit: DEPOSIT, gatewayDeposit: DEPOSIT };
  const [payer, payee] = await Promise.all([
    net.payer.call('start', { ...common, storePath: join(dir, 'payer.db'), voucherDurableEvery: 0n }),
    net.payee.call('start', { ...common, storePath: join(dir, 'payee.db'), voucherDurableEvery: BigInt(o.fsyncEveryVouchers) * o.price }),
  ]);
  // The device's open() resolves before the gateway holds the last signature of its side.
  const deadline = Date.now() + 10_000;
  while (net.gateway.agent.channels().filter((c) => c.phase === 'open').length < 2) {
    if (Date.now() > deadline) throw new Error('the gateway did not open both ledger channels');
    await sleep(5);
  }
  return { ...net, payerAddress: payer.address, payeeAddress: payee.address };
}

/** Opens a virtual channel from payer to payee and waits until both sides are funded. */
async function openVirtual(net: Net, kind: ChannelKind, lock: bigint): Promise<{ vcId: Bytes32; ms: number }> {
  const opened = await net.payer.call('openVirtual', { peer: net.payeeAddress, gateway: net.gateway.address, kind, lock });
  await net.payee.call('waitFunded', { vcId: opened.vcId });
  return opened;
}

// ---- measurements ----

/** Every message all three parties send for one virtual-channel open (parents with no other virtual channel). */
async function measureOpenExchange(net: Net, kind: ChannelKind, lock: bigint): Promise<{ vcId: Bytes32; bytes: number; messages: number; byType: string }> {
  await Promise.all([net.payer.call('trace', {}), net.payee.call('trace', {})]);
  net.gateway.transport.trace = emptyTrace();
  const { vcId } = await openVirtual(net, kind, lock);
  await sleep(200); // late answers still count
  const traces = await Promise.all([net.payer.call('traced', {}), net.payee.call('traced', {})]);
  traces.push(net.gateway.transport.trace);
  net.gateway.transport.trace = null;
  // In the order they were sent, whoever sent them.
  const sent = traces.flatMap((t) => t.sentMessages.map((m, i) => ({ ...m, at: t.sent[i]! }))).sort((a, b) => a.at - b.at);
  return { vcId, bytes: sum(sent.map((m) => m.bytes)), messages: sent.length, byType: describeSizes(sent) };
}

/** "OpenPropose 230, UpdateAccept 3×80, FundRequest 315+317": sizes grouped by message type. */
function describeSizes(messages: { type: string; bytes: number }[]): string {
  const byType = new Map<string, number[]>();
  for (const m of messages) byType.set(m.type, [...(byType.get(m.type) ?? []), m.bytes]);
  return [...byType]
    .map(([type, sizes]) => `${type} ${sizes.length > 1 && sizes.every((b) => b === sizes[0]) ? `${sizes.length}×${sizes[0]}` : sizes.join('+')}`)
    .join(', ');
}

async function measureOpenLatency(net: Net, opens: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < opens; i++) times.push((await openVirtual(net, ChannelKind.Stream, OPEN_LOCK)).ms);
  return times;
}

/**
 * Stream vouchers, one slice at a time: from the payer's first send to the payee's
 * receipt of the slice's last voucher; the payee must have verified every one of them.
 */
async function measureStream(net: Net, vcId: Bytes32, o: VirtualBenchOptions, clock: SigningClock): Promise<{ rate: number; vouchers: number; wireBytes: number; ackBytes: number }> {
  let cumulative = 0n;
  let received = 0;
  const slice = async (count: number): Promise<number> => {
    cumulative += BigInt(count) * o.price;
    const arrival = net.payee.call('awaitVoucher', { vcId, cumulative });
    const sent = await net.payer.call('stream', { vcId, count, amount: o.price });
    const got = await arrival;
    if (got.received - received !== count) throw new Error(`payee verified ${got.received - received} of ${count} vouchers`);
    received = got.received;
    return got.at - sent.firstSentAt;
  };
  await slice(o.streamSlice); // warm-up
  clock.slice(20);
  await Promise.all([net.payer.call('resetCount', {}), net.payee.call('resetCount', {})]);
  let ms = 0;
  for (let i = 0; i < o.streamSlices; i++) {
    ms += await slice(o.streamSlice);
    clock.slice(Math.ceil(o.streamSlice / 8));
  }
  const vouchers = o.streamSlices * o.streamSlice;
  const [payer, payee] = await Promise.all([net.payer.call('count', {}), net.payee.call('count', {})]);
  return { rate: vouchers / (ms / 1000), vouchers, wireBytes: payer.bytes / vouchers, ackBytes: payee.bytes / vouchers };
}

/** Bidirectional updates, awaited one after the other by the payer, in slices. */
async function measureBidi(net: Net, vcId: Bytes32, o: VirtualBenchOptions, clock: SigningClock): Promise<{ rate: number; updates: number; wireBytes: number }> {
  await net.payer.call('bidi', { vcId, count: o.bidiSlice, amount: o.price }); // warm-up
  clock.slice(10);
  await Promise.all([net.payer.call('resetCount', {}), net.payee.call('resetCount', {})]);
  let ms = 0;
  for (let i = 0; i < o.bidiSlices; i++) {
    ms += (await net.payer.call('bidi', { vcId, count: o.bidiSlice, amount: o.price })).ms;
    clock.slice(Math.ceil(o.bidiSlice / 2));
  }
  const updates = o.bidiSlices * o.bidiSlice;
  const counts = await Promise.all([net.payer.call('count', {}), net.payee.call('count', {})]);
  return { rate: updates / (ms / 1000), updates, wireBytes: sum(counts.map((c) => c.bytes)) / updates };
}

/** Where the time of one bidirectional update goes (medians, ms). */
interface BidiBreakdown {
  /** Payer: from an acceptance to the next proposal, which was signed and stored before and leaves unverified (see sendPrepared). */
  payerMs: number;
  /** Proposal: payer's send() to the payee's transport handler, through the broker. */
  hopOutMs: number;
  /** Payee: decode, verify, sign, durably store, send the acceptance. */
  payeeMs: number;
  hopBackMs: number;
}

/** One more slice with the transports tracing send and arrival times; it does not count in the rate. */
async function traceBidi(net: Net, vcId: Bytes32, o: VirtualBenchOptions): Promise<BidiBreakdown | undefined> {
  await Promise.all([net.payer.call('trace', {}), net.payee.call('trace', {})]);
  await net.payer.call('bidi', { vcId, count: o.bidiSlice, amount: o.price });
  const [payer, payee] = await Promise.all([net.payer.call('traced', {}), net.payee.call('traced', {})]);
  const n = o.bidiSlice;
  // A retransmission would break the one-to-one pairing of messages: no breakdown then.
  if ([payer.sent, payer.received, payee.sent, payee.received].some((times) => times.length !== n)) return undefined;
  const each = (f: (i: number) => number, count = n): number => median(Array.from({ length: count }, (_, i) => f(i)));
  return {
    payerMs: each((i) => payer.sent[i + 1]! - payer.received[i]!, n - 1),
    hopOutMs: each((i) => payee.received[i]! - payer.sent[i]!),
    payeeMs: each((i) => payee.sent[i]! - payee.received[i]!),
    hopBackMs: each((i) => payer.received[i]! - payee.sent[i]!),
  };
}

/** A voucher deep into a hotspot session: 1,000 units of 0.0001 ETH paid. */
function realisticVoucherBytes(): number {
  const alias = aliasOf(`0x${'ab'.repeat(32)}`);
  return encodeMessage({ type: MessageType.Voucher, alias, cumulative: 1000n * 10n ** 14n, sig: new Uint8Array(65).fill(0xee) }).length;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

// ---- the bench ----

async function measureAll(net: Net, o: VirtualBenchOptions): Promise<{ metrics: Record<string, number>; openExchange: string }> {
  const streamLock = BigInt((o.streamSlices + 1) * o.streamSlice) * o.price;
  const bidiLock = BigInt((o.bidiSlices + 2) * o.bidiSlice) * o.price;
  const exchange = await measureOpenExchange(net, ChannelKind.Stream, streamLock);
  const openTimes = await measureOpenLatency(net, o.opens);
  const { vcId: bidiVc } = await openVirtual(net, ChannelKind.Virtual, bidiLock);

  const streamClock = new SigningClock();
  const stream = await measureStream(net, exchange.vcId, o, streamClock);
  const bidiClock = new SigningClock();
  const bidi = await measureBidi(net, bidiVc, o, bidiClock);
  const breakdown = await traceBidi(net, bidiVc, o);

  const metrics = {
    streamVouchers: stream.vouchers,
    streamPaymentsPerSec: stream.rate,
    streamBoundPerSec: streamClock.streamBoundPerSec,
    streamRatio: stream.rate / streamClock.streamBoundPerSec,
    bidiUpdates: bidi.updates,
    bidiUpdatesPerSec: bidi.rate,
    bidiBoundPerSec: bidiClock.bidiBoundPerSec,
    bidiRatio: bidi.rate / bidiClock.bidiBoundPerSec,
    signUs: (streamClock.signMs + bidiClock.signMs) * 1000 / (streamClock.rounds + bidiClock.rounds),
    verifyUs: (streamClock.verifyMs + bidiClock.verifyMs) * 1000 / (streamClock.rounds + bidiClock.rounds),
    voucherBytes: realisticVoucherBytes(),
    streamWireBytesPerVoucher: stream.wireBytes,
    streamAckBytesPerVoucher: stream.ackBytes,
    bidiWireBytesPerUpdate: bidi.wireBytes,
    ...(breakdown && {
      bidiPayerMsP50: breakdown.payerMs,
      bidiHopOutMsP50: breakdown.hopOutMs,
      bidiPayeeMsP50: breakdown.payeeMs,
      bidiHopBackMsP50: breakdown.hopBackMs,
    }),
    openLatencyMsP50: median(openTimes),
    openLatencyMsMax: Math.max(...openTimes),
    openExchangeBytes: exchange.bytes,
    openExchangeMessages: exchange.messages,
  };
  return { metrics, openExchange: exchange.byType };
}

/** Where a bidirectional update's time goes, when the traced slice gave a breakdown. */
function breakdownRows(r: Record<string, number>): (string | number)[][] {
  if (r.bidiPayerMsP50 === undefined) return [];
  return [
    ['  bidiPayerMsP50', r.bidiPayerMsP50, 'send the prepared next proposal (then verify)'],
    ['  bidiHopOutMsP50', r.bidiHopOutMsP50!, 'payer → broker → payee'],
    ['  bidiPayeeMsP50', r.bidiPayeeMsP50!, 'verify, sign + fsync acceptance'],
    ['  bidiHopBackMsP50', r.bidiHopBackMsP50!, 'payee → broker → payer'],
  ];
}

function report(r: Record<string, number>, openExchange: string, o: VirtualBenchOptions): void {
  printTable(
    `Virtual channels over MQTT (payer, payee: separate processes; gateway + embedded aedes broker: bench process; loopback; SQLite synchronous=FULL, stream payee fsyncs every ${o.fsyncEveryVouchers} vouchers)`,
    ['metric', 'value', 'target'],
    [
      ['streamPaymentsPerSec', r.streamPaymentsPerSec!, `≥ ${(0.8 * r.streamBoundPerSec!).toFixed(0)} (0.8 × bound)`],
      ['streamBoundPerSec', r.streamBoundPerSec!, '1 / max(sign, verify)'],
      ['streamRatio', r.streamRatio!, '≥ 0.80'],
      ['bidiUpdatesPerSec', r.bidiUpdatesPerSec!, `≥ ${(0.8 * r.bidiBoundPerSec!).toFixed(0)} (0.8 × bound)`],
      ['bidiBoundPerSec', r.bidiBoundPerSec!, '1 / (2 sign + 2 verify)'],
      ['bidiRatio', r.bidiRatio!, '≥ 0.80'],
      ...breakdownRows(r),
      ['signUs / verifyUs', `${r.signUs!.toFixed(0)} / ${r.verifyUs!.toFixed(0)}`, 'secp256k1, @noble/curves'],
      ['voucherBytes', r.voucherBytes!, '≤ 100 (go-perun 418 per payment)'],
      ['streamWireBytesPerVoucher', r.streamWireBytesPerVoucher!, 'measured, without MQTT framing'],
      ['streamAckBytesPerVoucher', r.streamAckBytesPerVoucher!, `payee's acknowledgements (payer window ${STREAM_WINDOW} payments)`],
      ['bidiWireBytesPerUpdate', r.bidiWireBytesPerUpdate!, 'proposal + acceptance, measured'],
      ['openLatencyMsP50', r.openLatencyMsP50!, `over ${o.opens} opens through the gateway`],
      ['openExchangeBytes', r.openExchangeBytes!, `≤ 1024 (${r.openExchangeMessages} messages)`],
    ],
  );
  console.log(`open exchange: ${openExchange}`);
  console.log(`machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

export async function runVirtualBench(options: Partial<VirtualBenchOptions> = {}): Promise<Record<string, unknown>> {
  const o: VirtualBenchOptions = { ...DEFAULTS, cpuProfileDir: process.env.PICOPAY_BENCH_PROFILE_DIR, ...options };
  const dir = mkdtempSync(join(tmpdir(), 'picopay-bench-virtual-'));
  // The ratios need spare cores (payer, payee and broker run at once): say how busy the machine was.
  const machine = { cpus: cpus().length, loadAvg1mAtStart: loadavg()[0]! };
  let broker: EmbeddedBroker | undefined;
  let gateway: Gateway | undefined;
  const devices = [new DeviceProcess('payer', { cpuProfileDir: o.cpuProfileDir }), new DeviceProcess('payee', { cpuProfileDir: o.cpuProfileDir })] as const;
  try {
    broker = await startEmbeddedBroker({ host: '127.0.0.1' });
    gateway = await startGateway(broker.url, join(dir, 'gateway.db'));
    const net = await startDevices({ gateway, payer: devices[0], payee: devices[1] }, broker.url, dir, o);
    const { metrics, openExchange } = await measureAll(net, o);
    const results = { ...metrics, openExchange, ...machine, durability: `SQLite WAL synchronous=FULL; stream payee fsyncs every ${o.fsyncEveryVouchers} vouchers`, transport: 'MQTT QoS 1, embedded aedes on 127.0.0.1' };
    writeResults('virtual', results);
    report(metrics, openExchange, o);
    return results;
  } finally {
    await Promise.allSettled(devices.map((d) => d.stop()));
    await gateway?.stop().catch(() => undefined);
    await broker?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runVirtualBench();
  process.exit(0);
}
