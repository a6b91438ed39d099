import { MAX_LOCKED } from '../../src/model/allocation.ts';
import { Agent } from '../../src/client/agent.ts';
import { Signer } from '../../src/crypto/keys.ts';
import type { Bytes32 } from '../../src/model/types.ts';
import { ChannelStore } from '../../src/store/store.ts';
import { MqttTransport } from '../../src/transport/mqtt.ts';
import { CountingTransport, emptyTrace } from './counting.ts';
import { LOCAL_CHAIN } from '../../src/chain/anvil.ts';
import { type Command, type Commands, now, type Reply, type Request, type StartArgs, STREAM_WINDOW } from './protocol.ts';

// A device (payer or payee) of the virtual-channel bench, in its own OS process. It is
// driven by the bench over the IPC channel; see protocol.ts for the commands.

interface Device {
  agent: Agent;
  mqtt: MqttTransport;
  transport: CountingTransport;
  store: ChannelStore;
}

/** Stream payee: the vouchers received per channel, and who waits for which amount. */
interface VoucherLog {
  received: number;
  latest: bigint;
  latestAt: number;
  waiters: { cumulative: bigint; resolve: (r: Commands['awaitVoucher'][1]) => void }[];
}

let device: Device | undefined;
const vouchers = new Map<Bytes32, VoucherLog>();

function running(): Device {
  if (!device) throw new Error('device not started');
  return device;
}

function logOf(vcId: Bytes32): VoucherLog {
  let log = vouchers.get(vcId);
  if (!log) vouchers.set(vcId, (log = { received: 0, latest: 0n, latestAt: 0, waiters: [] }));
  return log;
}

function onVoucher(vcId: Bytes32, cumulative: bigint): void {
  const log = logOf(vcId);
  log.received++;
  log.latest = cumulative;
  log.latestAt = now();
  log.waiters = log.waiters.filter((w) => {
    if (cumulative < w.cumulative) return true;
    w.resolve({ at: log.latestAt, received: log.received });
    return false;
  });
}

async function start(args: StartArgs): Promise<Commands['start'][1]> {
  const signer = Signer.random();
  const store = new ChannelStore(args.storePath);
  const mqtt = new MqttTransport({ url: args.brokerUrl, self: signer.address, signer });
  const transport = new CountingTransport(mqtt);
  // The bench opens many virtual channels between one pair: no per-peer limit below the slot count.
  const agent = new Agent({ signer, transport, store, chain: LOCAL_CHAIN, voucherDurableEvery: args.voucherDurableEvery, virtualLimits: { perPeer: MAX_LOCKED } });
  agent.on('voucher', ({ channel, cumulative }) => onVoucher(channel.id, cumulative));
  // The handler must be set before connecting: the broker may deliver kept messages at once.
  agent.start();
  await mqtt.connect();
  await agent.open(args.gateway, { balances: [[args.deposit, args.gatewayDeposit]] });
  device = { agent, mqtt, transport, store };
  return { address: signer.address };
}

function waitFunded(vcId: Bytes32): Promise<Commands['waitFunded'][1]> {
  const { agent } = running();
  const funded = (): boolean => agent.channels().some((c) => c.id === vcId) && agent.isFunded(vcId);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      agent.off('funded', check);
      reject(new Error(`virtual channel ${vcId} not funded within 30 s`));
    }, 30_000);
    function check(): void {
      if (!funded()) return;
      clearTimeout(timer);
      agent.off('funded', check);
      resolve({ at: now() });
    }
    agent.on('funded', check);
    check();
  });
}

async function stream({ vcId, count, amount }: Commands['stream'][0]): Promise<Commands['stream'][1]> {
  const { agent } = running();
  const firstSentAt = now();
  for (let i = 0; i < count; i++) {
    // End-to-end flow control: never more than STREAM_WINDOW payments ahead of what the
    // payee acknowledged, so its backlog stays bounded however fast the payer signs.
    await agent.streamWindow(vcId, STREAM_WINDOW * amount);
    agent.payStream(vcId, amount);
    // mqtt.js corks the socket and uncorks it on process.nextTick, which never runs while
    // this loop goes on in microtasks: without a turn of the event loop, nothing would
    // leave the process before the last voucher is signed.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { firstSentAt, lastSentAt: now() };
}

function awaitVoucher({ vcId, cumulative }: Commands['awaitVoucher'][0]): Promise<Commands['awaitVoucher'][1]> {
  const log = logOf(vcId);
  if (log.latest >= cumulative) return Promise.resolve({ at: log.latestAt, received: log.received });
  return new Promise((resolve) => log.waiters.push({ cumulative, resolve }));
}

async function bidi({ vcId, count, amount }: Commands['bidi'][0]): Promise<Commands['bidi'][1]> {
  const { agent } = running();
  const t0 = performance.now();
  // Like an app paying continuously, the next payment waits in the queue behind the one
  // in flight; the agent signs and stores it while the payee answers. Still one update in
  // flight on the channel.
  const inFlight = new Set<Promise<unknown>>();
  for (let i = 0; i < count; i++) {
    const payment: Promise<unknown> = agent.pay(vcId, amount).finally(() => inFlight.delete(payment));
    inFlight.add(payment);
    if (inFlight.size >= 2) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return { ms: performance.now() - t0 };
}

async function stop(): Promise<null> {
  if (!device) return null;
  device.agent.stop();
  await device.mqtt.close();
  device.store.close();
  device = undefined;
  return null;
}

async function openVirtual({ peer, gateway, kind, lock }: Commands['openVirtual'][0]): Promise<Commands['openVirtual'][1]> {
  const t0 = performance.now();
  const vc = await running().agent.openVirtual(peer, { gateway, kind, balances: [[lock, 0n]] });
  return { vcId: vc.id, ms: performance.now() - t0 };
}

function traced(): Commands['traced'][1] {
  const { transport } = running();
  const trace = transport.trace ?? emptyTrace();
  transport.trace = null;
  return trace;
}

type Handlers = { [C in Command]: (args: Commands[C][0]) => Commands[C][1] | Promise<Commands[C][1]> };

const handlers: Handlers = {
  start,
  openVirtual,
  waitFunded: ({ vcId }) => waitFunded(vcId),
  stream,
  awaitVoucher,
  bidi,
  resetCount: () => {
    running().transport.resetCount();
    return null;
  },
  count: () => {
    const { bytes, messages } = running().transport;
    return { bytes, messages };
  },
  trace: () => {
    running().transport.trace = emptyTrace();
    return null;
  },
  traced,
  stop,
};

async function handle<C extends Command>(req: Request<C>): Promise<Commands[C][1]> {
  const handler = handlers[req.cmd] as (args: Commands[C][0]) => Commands[C][1] | Promise<Commands[C][1]>;
  return handler(req.args);
}

function reply(r: Reply, then?: () => void): void {
  process.send!(r, undefined, {}, then);
}

process.on('message', (req: Request) => {
  handle(req).then(
    (result) => reply({ id: req.id, ok: true, result }, req.cmd === 'stop' ? () => process.exit(0) : undefined),
    (err: unknown) => reply({ id: req.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  );
});
// The bench went away: do not linger.
process.on('disconnect', () => process.exit(1));
