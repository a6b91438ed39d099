import { createLogger } from '../log.ts';
import { startEmbeddedBroker } from '../transport/broker.ts';
import { announce, integer, parseOptions, usage } from './args.ts';

const SPECS = {
  port: { type: 'string', arg: 'N', help: 'port on 127.0.0.1 (0 picks a free one)', default: '1883' },
} as const;

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(usage('broker', 'The embedded aedes MQTT broker as its own process, on 127.0.0.1.', SPECS, ['picopay broker --port 1883']));
    return;
  }
  const log = createLogger('broker');
  const broker = await startEmbeddedBroker({ port: integer(o.port, 'port'), logger: log });
  log.info({ url: broker.url }, 'broker listening');
  announce('ready', { mqttUrl: broker.url });
  const stop = async (): Promise<void> => {
    await broker.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
