import { describe } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../src/transport/broker.ts';
import { mqttTransportSuite, type BrokerUnderTest } from './mqtt-suite.ts';

/** The embedded broker keeps sessions in memory: a restart loses them, which the transport must survive. */
async function startAedes(): Promise<BrokerUnderTest> {
  let broker: EmbeddedBroker = await startEmbeddedBroker();
  const port = broker.port;
  return {
    url: broker.url,
    port,
    restart: async () => {
      await broker.close();
      broker = await startEmbeddedBroker({ port });
    },
    stop: () => broker.close(),
  };
}

describe('MqttTransport over the embedded aedes broker', () => {
  mqttTransportSuite(startAedes);
});
