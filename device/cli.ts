import { createServer } from 'node:net';
import { join } from 'node:path';
import { address, announce, exitOnStoreFailure, integer, parseOptions, required, usage, type Values } from '../src/cli/args.ts';
import { CONNECTION_SPECS, mqttLogin, timing } from '../src/cli/connection.ts';
import { formatEth, parseAmount } from '../src/cli/units.ts';
import { ConfigError } from '../src/errors.ts';
import { DEFAULT_CHALLENGE_DURATION, MAX_CHALLENGE_DURATION, MIN_CHALLENGE_DURATION } from '../src/model/duration.ts';
import { createLogger, type Logger } from '../src/log.ts';
import type { Address } from '../src/model/types.ts';
import { DEFAULT_VIRTUAL_LIMITS } from '../src/client/types.ts';
import { runHotspot } from './roles/hotspot.ts';
import { encodePrice } from '../src/transport/ble/bluez/gatt.ts';
import { runNearPayee, runNearPayer } from './roles/near.ts';
import { runPayer } from './roles/payer.ts';
import { chainFunding, type FundingSource, gatewayFunding } from './funding.ts';
import { DEFAULT_UNIT_BYTES } from './hotspot/meter.ts';
import { type GatewayInfo, readGatewayInfo } from './gatewayInfo.ts';
import { startDevice } from './service.ts';

const SPECS = {
  role: { type: 'string', arg: 'payer|hotspot|payee', help: 'what this device does (payee: near-field, over BLE)' },
  'data-dir': { type: 'string', arg: 'DIR', help: 'key, channel store', default: join('.picopay', 'device') },
  'password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding the keystore password', default: 'PICOPAY_PASSWORD' },
  'gateway-info': { type: 'string', arg: 'FILE', help: "the gateway's ready line (JSON), trusted: fills the four options below and, unless one is given, the funding check's URL" },
  gateway: { type: 'string', arg: 'ADDR', help: "the gateway's address" },
  'mqtt-url': { type: 'string', arg: 'URL', help: 'MQTT broker' },
  'chain-id': { type: 'string', arg: 'N', help: 'chain id' },
  adjudicator: { type: 'string', arg: 'ADDR', help: 'adjudicator contract' },
  'rpc-url': { type: 'string', arg: 'URL', help: 'chain JSON-RPC (your own node): the device checks there that both deposits of its ledger channel are in' },
  confirmations: { type: 'string', arg: 'N', help: 'blocks a deposit must be deep to count', default: '1' },
  'status-url': { type: 'string', arg: 'URL', help: "without --rpc-url: trust the gateway's status API to say the channel is funded (wins over --gateway-info)" },
  deposit: { type: 'string', arg: 'AMOUNT', help: "this device's side of its ledger channel (its owner deposits it)", default: '0.1' },
  'gateway-deposit': { type: 'string', arg: 'AMOUNT', help: 'what the gateway puts into the ledger channel', default: '0.1' },
  'virtual-fee': { type: 'string', arg: 'AMOUNT', help: "the gateway's fee per virtual channel, paid when this device's side is funded (default: from --gateway-info, else 0)" },
  'max-virtual-fee': { type: 'string', arg: 'AMOUNT', help: 'refuse to start if the gateway charges more than this per virtual channel', default: '0.001' },
  'unit-bytes': { type: 'string', arg: 'N', help: 'hotspot: bytes per paid unit; payer: the unit its --price is for', default: String(DEFAULT_UNIT_BYTES) },
  'channels-per-payer': { type: 'string', arg: 'N', help: 'virtual channels one peer may hold open with this device at once', default: String(DEFAULT_VIRTUAL_LIMITS.perPeer) },
  'challenge-duration': { type: 'string', arg: 'SECONDS', help: `challenge period of the channels this device proposes: how long it may be offline and still answer a stale registration (${MIN_CHALLENGE_DURATION}..${MAX_CHALLENGE_DURATION})`, default: String(DEFAULT_CHALLENGE_DURATION) },
  'idle-settle': { type: 'string', arg: 'SECONDS', help: 'settle a virtual channel nobody has used for this long (a stream: ask its payer to close at the highest voucher)', default: String(DEFAULT_VIRTUAL_LIMITS.idleMs / 1000) },
  'min-lock': { type: 'string', arg: 'AMOUNT', help: 'refuse virtual channels that lock less than this (default: one unit\'s price)' },
  price: { type: 'string', arg: 'AMOUNT', help: "hotspot: price of one unit (its signed tariff); payer: the most it pays per --unit-bytes (it refuses a tariff asking more); payee: the price per payment it advertises", default: '0.0001' },
  'proxy-port': { type: 'string', arg: 'N', help: 'hotspot: metered proxy port on 127.0.0.1 (default: a free one)' },
  'idle-cutoff-ms': { type: 'string', arg: 'MS', help: 'hotspot: cut a client off after waiting this long for payment', default: '5000' },
  'close-after-settle': { type: 'boolean', help: "hotspot: close the ledger channel after the first client's channel settles" },
  'allow-upstream': { type: 'string', arg: 'HOST:PORT,…', help: 'hotspot: destinations clients may reach although not public (by default only public addresses, never this machine or the LAN)' },
  'proxy-names': { type: 'string', arg: 'HOST:PORT,…', help: 'hotspot: other names clients reach the proxy by (signed into their credentials)' },
  hotspot: { type: 'string', arg: 'ADDR', help: "payer: the hotspot's address" },
  'proxy-url': { type: 'string', arg: 'URL', help: "payer: the hotspot's proxy" },
  download: { type: 'string', arg: 'URL', help: 'payer: what to download through the hotspot' },
  lock: { type: 'string', arg: 'AMOUNT', help: 'payer: most it may pay the hotspot (locked in the virtual channel)', default: '0.05' },
  mode: { type: 'string', arg: 'forward|connect', help: 'payer: plain HTTP forwarding or a CONNECT tunnel', default: 'forward' },
  'close-after': { type: 'boolean', help: 'payer: close the ledger channel when done' },
  'retry-for': { type: 'string', arg: 'SECONDS', help: 'payer: how long an interrupted download (the hotspot, the broker or the link gone) is tried again, from the byte it reached', default: '300' },
  ble: { type: 'string', arg: 'ADAPTER', help: 'a BLE link beside MQTT, on this BlueZ adapter (hci0, …): needed by a payee and by a payer with --near' },
  name: { type: 'string', arg: 'NAME', help: 'payee: the name it advertises', default: 'picopay' },
  relay: { type: 'boolean', help: 'payee: pass on the sealed frames of nearby devices with no internet to the gateway, and back' },
  near: { type: 'string', arg: 'ADDR', help: 'payer: pay this nearby payee over BLE (instead of a hotspot download)' },
  'no-internet': { type: 'boolean', help: 'payer with --near: no broker, no chain: reach the gateway through the payee, which must --relay (the device then trusts its owner for its deposit)' },
  amount: { type: 'string', arg: 'AMOUNT', help: 'payer with --near: each payment' },
  count: { type: 'string', arg: 'N', help: 'payer with --near: how many payments', default: '1' },
  'fund-timeout-ms': { type: 'string', arg: 'MS', help: 'how long to wait for the ledger channel to be funded on-chain', default: '120000' },
  ...CONNECTION_SPECS,
} as const;

/**
 * Where the device learns that its ledger channel is funded: an explicit --rpc-url, else an
 * explicit --status-url, else what the gateway's info names (its RPC, else its status API).
 * A URL from the info file is the gateway's choice: the device trusts the gateway for it.
 */
function fundingSource(o: Values<typeof SPECS>, info: Partial<GatewayInfo>, chain: { chainId: bigint; adjudicator: Address }, logger: Logger): FundingSource | undefined {
  // chainFunding refuses a depth below 1 with a ConfigError of its own.
  const confirmations = integer(o.confirmations, 'confirmations')!;
  const onChain = (rpcUrl: string): FundingSource => chainFunding({ rpcUrl, ...chain, confirmations });
  const explicit = o['rpc-url'] ? onChain(o['rpc-url']) : o['status-url'] ? gatewayFunding(o['status-url']) : undefined;
  if (explicit) {
    logger.info({ source: explicit.name, fromGatewayInfo: false }, 'funding check');
    return explicit;
  }
  const trusted = info.rpcUrl ? onChain(info.rpcUrl) : info.httpUrl ? gatewayFunding(info.httpUrl) : undefined;
  if (trusted) logger.info({ source: trusted.name, fromGatewayInfo: true }, 'funding check at a URL from --gateway-info: trusting the gateway for it');
  return trusted;
}

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(
      usage('device', 'Runs a device agent. A hotspot sells bandwidth through a metered HTTP proxy; a payer downloads through it and pays per unit with stream vouchers in a virtual channel through the gateway. Prints JSON lines on stdout; logs go to stderr.', SPECS, [
        'picopay device --role hotspot --gateway-info gateway.json --data-dir hotspot',
        'picopay device --role payer --gateway-info gateway.json --hotspot 0x… --proxy-url http://127.0.0.1:8080 --download http://127.0.0.1:9000/bytes/5000000',
        'picopay device --role payee --ble hci0 --name kiosk --price 0.0001 --relay --gateway-info gateway.json --data-dir kiosk',
        'picopay device --role payer --ble hci0 --near 0x… --amount 0.0001 --count 10 --lock 0.01 --gateway-info gateway.json --data-dir phone',
      ]),
    );
    return;
  }
  const info = readGatewayInfo(o['gateway-info']);
  const role = required(o.role, 'role');
  if (role !== 'payer' && role !== 'hotspot' && role !== 'payee') throw new ConfigError('--role must be payer, hotspot or payee');
  const near = nearOptions(o, role);
  const logger = createLogger(`device-${role}`);
  const gateway = address(o.gateway ?? info.address, 'gateway');
  const unitBytes = integer(o['unit-bytes'], 'unit-bytes')!;
  const price = parseAmount(o.price!, 'price');
  const adjudicator = address(o.adjudicator ?? info.adjudicator, 'adjudicator');
  const chainId = BigInt(required(o['chain-id'] ?? (info.chainId === undefined ? undefined : String(info.chainId)), 'chain-id'));
  const funding = fundingSource(o, info, { chainId, adjudicator }, logger);
  const fundTimeoutMs = integer(o['fund-timeout-ms'], 'fund-timeout-ms')!;
  const virtualFee = parseAmount(o['virtual-fee'] ?? `${info.virtualFee ?? 0}wei`, 'virtual-fee');
  const maxFee = parseAmount(o['max-virtual-fee']!, 'max-virtual-fee');
  const idleSeconds = integer(o['idle-settle'], 'idle-settle')!;
  if (idleSeconds < 1) throw new ConfigError('--idle-settle must be at least 1 second');
  const challengeDuration = BigInt(integer(o['challenge-duration'], 'challenge-duration')!);
  if (challengeDuration < MIN_CHALLENGE_DURATION || challengeDuration > MAX_CHALLENGE_DURATION) {
    throw new ConfigError(`--challenge-duration must be between ${MIN_CHALLENGE_DURATION} and ${MAX_CHALLENGE_DURATION} seconds (the contract's bounds)`);
  }
  if (virtualFee > maxFee) throw new ConfigError(`the gateway charges ${formatEth(virtualFee)} per virtual channel, above --max-virtual-fee ${formatEth(maxFee)}`);
  // Every option is checked before anything exists: no key, no channel, no deposit for a typo.
  const hotspotOptions =
    role === 'hotspot'
      ? {
          proxyPort: await freeToListen(integer(o['proxy-port'], 'proxy-port') ?? 0, 'proxy-port'),
          unitBytes,
          price,
          idleCutoffMs: integer(o['idle-cutoff-ms'], 'idle-cutoff-ms')!,
          fundTimeoutMs,
          closeAfterSettle: o['close-after-settle'],
          proxyNames: list(o['proxy-names']),
          allowUpstream: list(o['allow-upstream']).map((d) => d.toLowerCase()),
          logger,
        }
      : null;
  const nearPayer =
    role === 'payer' && near
      ? {
          gateway,
          payee: near.payee!,
          lock: parseAmount(o.lock!, 'lock'),
          amount: parseAmount(required(o.amount, 'amount'), 'amount'),
          count: integer(o.count, 'count')!,
          fundTimeoutMs,
          retryForMs: integer(o['retry-for'], 'retry-for')! * 1000,
          logger,
        }
      : null;
  if (nearPayer && (nearPayer.count < 1 || nearPayer.amount * BigInt(nearPayer.count) > nearPayer.lock)) {
    throw new ConfigError(`--count ${nearPayer.count} payments of ${formatEth(nearPayer.amount)} must be at least one and within --lock ${formatEth(nearPayer.lock)}`);
  }
  const payerOptions =
    role === 'payer' && !near
      ? {
          gateway,
          hotspot: address(o.hotspot, 'hotspot'),
          proxyUrl: url(required(o['proxy-url'], 'proxy-url'), 'proxy-url'),
          url: url(required(o.download, 'download'), 'download'),
          lock: parseAmount(o.lock!, 'lock'),
          unitBytes,
          price,
          mode: o.mode === 'connect' ? ('connect' as const) : ('forward' as const),
          fundTimeoutMs,
          retryForMs: integer(o['retry-for'], 'retry-for')! * 1000,
          closeAfter: o['close-after'],
          logger,
        }
      : null;
  const dev = await startDevice({
    dataDir: o['data-dir']!,
    password: process.env[o['password-env']!] ?? '',
    gateway,
    // With no internet there is no broker: the payee relays.
    mqttUrl: o['no-internet'] ? '' : required(o['mqtt-url'] ?? info.mqttUrl, 'mqtt-url'),
    chainId,
    adjudicator,
    deposit: parseAmount(o.deposit!, 'deposit'),
    gatewayDeposit: parseAmount(o['gateway-deposit']!, 'gateway-deposit'),
    voucherDurableEvery: 10n * price,
    challengeDuration,
    virtualFee,
    virtualLimits: { perPeer: integer(o['channels-per-payer'], 'channels-per-payer')!, minLock: o['min-lock'] ? parseAmount(o['min-lock'], 'min-lock') : price, idleMs: idleSeconds * 1000 },
    mqttLogin: mqttLogin(o),
    timing: timing(o),
    funding: o['no-internet'] ? undefined : funding,
    near: near ? { role: role === 'payee' ? 'payee' : 'payer', adapter: near.adapter, name: o.name, price, relay: o.relay, via: o['no-internet'] ? near.payee : undefined } : undefined,
    // Power-cut tests (the chaos suite): killing the process then loses what was not fsynced.
    writeBack: process.env.PICOPAY_STORE_WRITE_BACK === '1',
    logger,
  });
  announce('ledger', { address: dev.signer.address, channel: dev.ledger.id, deposit: dev.ledger.current.state.outcome.balances[0]![dev.ledger.idx] });
  const stop = async (): Promise<void> => {
    await dev.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  dev.agent.on('failed', exitOnStoreFailure(logger));
  if (hotspotOptions) {
    await runHotspot(dev, hotspotOptions);
    return;
  }
  if (role === 'payee') {
    await runNearPayee(dev, { fundTimeoutMs, logger });
    return;
  }
  if (nearPayer) await runNearPayer(dev, nearPayer);
  else await runPayer(dev, payerOptions!);
  await dev.stop();
  process.exit(0);
}

/** The BLE options, checked: a payee needs --ble; a payer with --near needs it too. */
function nearOptions(o: Values<typeof SPECS>, role: string): { adapter: string; payee?: Address } | null {
  const adapter = o.ble;
  if (adapter !== undefined && !/^hci\d{1,2}$/.test(adapter)) throw new ConfigError(`--ble: not a BlueZ adapter name: ${adapter} (hci0, hci1, …)`);
  if (role === 'payee') {
    if (!adapter) throw new ConfigError('--role payee needs --ble ADAPTER');
    if (o.name!.length === 0 || Buffer.byteLength(o.name!) > 20) throw new ConfigError('--name must be 1 to 20 bytes (it goes into the scan response)');
    if (!encodePrice(parseAmount(o.price!, 'price'))) throw new ConfigError(`--price ${o.price}: the advertisement carries a price as m × 10^e wei with m below 65536 (e.g. 0.0001 or 0.000125)`);
    return { adapter };
  }
  if (role === 'payer' && o.near) {
    if (!adapter) throw new ConfigError('--near needs --ble ADAPTER');
    return { adapter, payee: address(o.near, 'near') };
  }
  if (o['no-internet']) throw new ConfigError('--no-internet goes with --role payer --near');
  return null;
}

/** A comma-separated option as its items. */
function list(text: string | undefined): string[] {
  return text?.split(',').map((n) => n.trim()).filter(Boolean) ?? [];
}

/** An http(s) URL, or a ConfigError naming the option. */
function url(text: string, what: string): string {
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new ConfigError(`--${what}: not a URL: ${text}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ConfigError(`--${what}: expected an http:// or https:// URL, got ${text}`);
  return text;
}

/** `port` if this process may listen on it on 127.0.0.1 now (0: any), else a ConfigError. */
function freeToListen(port: number, what: string): Promise<number> {
  if (port < 0 || port > 65535) return Promise.reject(new ConfigError(`--${what} must be between 0 and 65535`));
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(new ConfigError(`--${what} ${port}: cannot listen there (${err.code ?? err.message})`)));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(port)));
  });
}
