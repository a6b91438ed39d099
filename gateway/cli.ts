import { join } from 'node:path';
import { address, announce, exitOnStoreFailure, integer, parseOptions, usage } from '../src/cli/args.ts';
import { CONNECTION_SPECS, mqttLogin, timing } from '../src/cli/connection.ts';
import { parseAmount } from '../src/cli/units.ts';
import { ConfigError } from '../src/errors.ts';
import { createLogger } from '../src/log.ts';
import { DEFAULT_CONFIRMATIONS } from './chain.ts';
import { startGateway } from './service.ts';

const SPECS = {
  'data-dir': { type: 'string', arg: 'DIR', help: 'key, channel store', default: join('.picopay', 'gateway') },
  'password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding the keystore password', default: 'PICOPAY_PASSWORD' },
  'rpc-url': { type: 'string', arg: 'URL', help: 'chain RPC (default: start anvil on 127.0.0.1 and deploy the contracts)' },
  'chain-id': { type: 'string', arg: 'N', help: 'chain id, with --rpc-url' },
  adjudicator: { type: 'string', arg: 'ADDR', help: 'adjudicator contract, with --rpc-url' },
  'mqtt-url': { type: 'string', arg: 'URL', help: 'MQTT broker (default: an embedded broker on 127.0.0.1)' },
  'mqtt-port': { type: 'string', arg: 'N', help: 'port of the embedded broker (default: a free one)' },
  'http-port': { type: 'string', arg: 'N', help: 'status API on 127.0.0.1 (default: a free one)' },
  'max-deposit': { type: 'string', arg: 'AMOUNT', help: "most the gateway puts into one device's ledger channel", default: '1' },
  'hold-timeout-ms': { type: 'string', arg: 'MS', help: 'how long a virtual-channel request waits for its counterpart', default: '30000' },
  'virtual-fee': { type: 'string', arg: 'AMOUNT', help: 'what each device pays (asset 0) when its ledger channel funds a virtual channel', default: '0' },
  confirmations: { type: 'string', arg: 'N', help: 'blocks deep a deposit or a registration must be to count', default: String(DEFAULT_CONFIRMATIONS) },
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
  const gw = await startGateway({
    dataDir: o['data-dir']!,
    password: process.env[o['password-env']!] ?? '',
    rpcUrl: o['rpc-url'],
    chainId: integer(o['chain-id'], 'chain-id'),
    adjudicator: o.adjudicator ? address(o.adjudicator, 'adjudicator') : undefined,
    mqttUrl: o['mqtt-url'],
    mqttPort: integer(o['mqtt-port'], 'mqtt-port'),
    httpPort: integer(o['http-port'], 'http-port'),
    maxDeposit: parseAmount(o['max-deposit']!, 'max-deposit'),
    holdTimeoutMs: integer(o['hold-timeout-ms'], 'hold-timeout-ms')!,
    virtualFee,
    confirmations,
    mqttLogin: mqttLogin(o),
    timing: timing(o),
    logger,
  });
  announce('ready', { address: gw.address, rpcUrl: gw.rpcUrl, chainId: gw.chainId, adjudicator: gw.adjudicator, mqttUrl: gw.mqttUrl, httpUrl: gw.httpUrl, virtualFee });
  const stop = async (): Promise<void> => {
    logger.info('stopping');
    await gw.stop();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  gw.onFailed(exitOnStoreFailure(logger));
}
