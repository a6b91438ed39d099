import { join } from 'node:path';
import { address, announce, exitOnStoreFailure, integer, parseOptions, usage } from '../src/cli/args.ts';
import { ADJUDICATOR_BLOCK_SPEC, adjudicatorBlock, CONNECTION_SPECS, mqttLogin, timing } from '../src/cli/connection.ts';
import { formatEth, parseAmount } from '../src/cli/units.ts';
import { ConfigError } from '../src/errors.ts';
import { createLogger } from '../src/log.ts';
import { type AdmissionLimits, DEFAULT_LIMITS } from './admission.ts';
import { DEFAULT_CONFIRMATIONS, DEFAULT_OFFLINE_MS } from './chain.ts';
import { startGateway } from './service.ts';

const SPECS = {
  'data-dir': { type: 'string', arg: 'DIR', help: 'key, channel store', default: join('.picopay', 'gateway') },
  'password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding the keystore password', default: 'PICOPAY_PASSWORD' },
  'rpc-url': { type: 'string', arg: 'URL', help: 'chain RPC (default: start anvil on 127.0.0.1 and deploy the contracts)' },
  'chain-id': { type: 'string', arg: 'N', help: 'chain id, with --rpc-url' },
  adjudicator: { type: 'string', arg: 'ADDR', help: 'adjudicator contract, with --rpc-url' },
  ...ADJUDICATOR_BLOCK_SPEC,
  'mqtt-url': { type: 'string', arg: 'URL', help: 'MQTT broker (default: an embedded broker on 127.0.0.1)' },
  'mqtt-admin-username': { type: 'string', arg: 'NAME', help: "with --mqtt-url: the Mosquitto dynamic-security admin; the gateway then issues devices' logins (docs/mqtt)" },
  'mqtt-admin-password-env': { type: 'string', arg: 'NAME', help: "environment variable holding that admin's password" },
  'mqtt-port': { type: 'string', arg: 'N', help: 'port of the embedded broker (default: a free one)' },
  'mqtt-names': { type: 'string', arg: 'HOST:PORT,…', help: 'other names devices reach the embedded broker by, through a forwarded port or a NAT (a login token names the broker it is for)' },
  'http-port': { type: 'string', arg: 'N', help: 'status API on 127.0.0.1 (default: a free one)' },
  'max-deposit': { type: 'string', arg: 'AMOUNT', help: "most the gateway puts into one device's ledger channels together", default: formatEth(DEFAULT_LIMITS.maxDeposit) },
  'max-total-deposit': { type: 'string', arg: 'AMOUNT', help: "most the gateway puts into all devices' ledger channels together", default: formatEth(DEFAULT_LIMITS.maxTotalDeposit) },
  'max-channels-per-device': { type: 'string', arg: 'N', help: 'most live ledger channels one device may hold with the gateway', default: String(DEFAULT_LIMITS.maxChannelsPerDevice) },
  'min-device-deposit': { type: 'string', arg: 'AMOUNT', help: 'least a device must put into its own side (a key with nothing at stake gets no channel)', default: formatEth(DEFAULT_LIMITS.minDeviceDeposit) },
  'max-unfunded-channels': { type: 'string', arg: 'N', help: 'most ledger channels waiting for their device\'s deposit, all devices together', default: String(DEFAULT_LIMITS.maxUnfunded) },
  assets: { type: 'string', arg: 'ADDR,…', help: 'assets the gateway holds channels in (0x0000000000000000000000000000000000000000 is ETH)', default: DEFAULT_LIMITS.assets.join(',') },
  'funding-timeout': { type: 'string', arg: 'SECONDS', help: 'how long a device has to deposit its side; then its channel is abandoned (the gateway deposits only after the device)', default: String(DEFAULT_LIMITS.fundingTimeoutMs / 1000) },
  'hold-timeout-ms': { type: 'string', arg: 'MS', help: 'how long a virtual-channel request waits for its counterpart', default: '30000' },
  'virtual-fee': { type: 'string', arg: 'AMOUNT', help: 'what each device pays (asset 0) when its ledger channel funds a virtual channel', default: '0' },
  confirmations: { type: 'string', arg: 'N', help: 'blocks deep a deposit or a registration must be to count', default: String(DEFAULT_CONFIRMATIONS) },
  'offline-timeout': { type: 'string', arg: 'SECONDS', help: 'how long a device with a virtual channel open may stay offline before the gateway settles its channels on-chain', default: String(DEFAULT_OFFLINE_MS / 1000) },
  'sweep-interval-ms': { type: 'string', arg: 'MS', help: "how often every channel's registration is read directly and on-chain settlements are advanced", default: '60000' },
  ...CONNECTION_SPECS,
} as const;

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(
      usage('gateway', 'Runs a gateway: holds ledger channels with devices, funds and settles virtual channels between them, deposits and closes on-chain. Prints one JSON line {"event":"ready",...} on stdout when it serves; logs go to stderr.', SPECS, [
        'picopay gateway                                   # local chain and broker, for trying things out',
        'picopay gateway --rpc-url https://rpc.example --chain-id 100 --adjudicator 0x… --mqtt-url mqtts://broker.example',
      ]),
    );
    return;
  }
  const logger = createLogger('gateway');
  const virtualFee = parseAmount(o['virtual-fee']!, 'virtual-fee');
  const confirmations = integer(o.confirmations, 'confirmations')!;
  if (confirmations < 1) throw new ConfigError('--confirmations must be at least 1');
  const limits: AdmissionLimits = {
    maxDeposit: parseAmount(o['max-deposit']!, 'max-deposit'),
    maxTotalDeposit: parseAmount(o['max-total-deposit']!, 'max-total-deposit'),
    maxChannelsPerDevice: integer(o['max-channels-per-device'], 'max-channels-per-device')!,
    minDeviceDeposit: parseAmount(o['min-device-deposit']!, 'min-device-deposit'),
    fundingTimeoutMs: integer(o['funding-timeout'], 'funding-timeout')! * 1000,
    maxUnfunded: integer(o['max-unfunded-channels'], 'max-unfunded-channels')!,
    assets: o.assets!.split(',').map((a) => address(a.trim(), 'assets')),
  };
  if (limits.maxChannelsPerDevice < 1) throw new ConfigError('--max-channels-per-device must be at least 1');
  if (limits.fundingTimeoutMs < 1000) throw new ConfigError('--funding-timeout must be at least 1 second');
  if (o['mqtt-admin-username'] && !o['mqtt-url']) throw new ConfigError('--mqtt-admin-username needs --mqtt-url: the embedded broker checks keys itself');
  const gw = await startGateway({
    dataDir: o['data-dir']!,
    password: process.env[o['password-env']!] ?? '',
    rpcUrl: o['rpc-url'],
    chainId: integer(o['chain-id'], 'chain-id'),
    adjudicator: o.adjudicator ? address(o.adjudicator, 'adjudicator') : undefined,
    adjudicatorBlock: adjudicatorBlock(o),
    mqttUrl: o['mqtt-url'],
    mqttPort: integer(o['mqtt-port'], 'mqtt-port'),
    mqttNames: o['mqtt-names']?.split(',').map((n) => n.trim()).filter(Boolean),
    httpPort: integer(o['http-port'], 'http-port'),
    limits,
    holdTimeoutMs: integer(o['hold-timeout-ms'], 'hold-timeout-ms')!,
    virtualFee,
    confirmations,
    offlineMs: integer(o['offline-timeout'], 'offline-timeout')! * 1000,
    sweepMs: integer(o['sweep-interval-ms'], 'sweep-interval-ms')!,
    mqttLogin: mqttLogin(o),
    mqttAdmin: o['mqtt-admin-username'] ? { username: o['mqtt-admin-username'], password: process.env[o['mqtt-admin-password-env'] ?? ''] ?? '' } : undefined,
    timing: timing(o),
    logger,
  });
  announce('ready', { address: gw.address, rpcUrl: gw.rpcUrl, chainId: gw.chainId, adjudicator: gw.adjudicator, mqttUrl: gw.mqttUrl, httpUrl: gw.httpUrl, virtualFee, limits });
  const stop = async (): Promise<void> => {
    logger.info('stopping');
    await gw.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  gw.onFailed(exitOnStoreFailure(logger));
}
