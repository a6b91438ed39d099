import { connectAsync, ErrorWithSubackPacket, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TransportError } from '../../src/errors.ts';
import type { Address } from '../../src/model/types.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../src/transport/broker.ts';
import { MqttTransport } from '../../src/transport/mqtt.ts';
import { inboxFilter, inboxTopic } from '../../src/transport/topics.ts';
import { randomAddress, Recorder, text, waitFor } from './helpers.ts';
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

describe('the embedded broker with authentication and the ACL', () => {
  const [a, b, mallory] = [randomAddress(), randomAddress(), randomAddress()];
  const password = (address: Address) => `secret-${address.slice(2, 10)}`;
  let broker: EmbeddedBroker;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    broker = await startEmbeddedBroker({
      acl: true,
      authenticate: (username, secret) => username !== undefined && secret?.toString() === password(username as Address),
    });
  });

  // Each test closes its clients: a device left connected would fight the next test's
  // device with the same session id for the connection.
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });

  afterAll(() => broker.close());

  async function device(self: Address, login: Address = self): Promise<{ transport: MqttTransport; recorder: Recorder }> {
    const transport = new MqttTransport({ url: broker.url, self, username: login, password: password(login), connectTimeoutMs: 10_000 });
    const recorder = new Recorder();
    transport.setHandler(recorder);
    cleanups.push(() => transport.close());
    await transport.connect();
    return { transport, recorder };
  }

  async function malloryClient(): Promise<MqttClient> {
    const client = await connectAsync(broker.url, { username: mallory, password: password(mallory), reconnectPeriod: 0 });
    cleanups.push(() => client.endAsync(true));
    return client;
  }

  it('refuses a wrong password', async () => {
    const transport = new MqttTransport({ url: broker.url, self: a, password: 'wrong', connectTimeoutMs: 10_000 });
    await expect(transport.connect()).rejects.toBeInstanceOf(TransportError);
  });

  it('refuses to subscribe a device to an inbox that is not its login', async () => {
    await expect(device(b, mallory)).rejects.toBeInstanceOf(TransportError);
  });

  it("refuses subscriptions to another device's inbox", async () => {
    const client = await malloryClient();
    const refusal = await client
      .subscribeAsync([inboxFilter(b), 'picopay/v1/inbox/#', inboxFilter(mallory), 'picopay/v1/presence/+'])
      .catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ErrorWithSubackPacket);
    expect((refusal as ErrorWithSubackPacket).packet.granted).toEqual([0x80, 0x80, 0, 0]);
  });

  it('drops a message sent under another name and disconnects its sender', async () => {
    const alice = await device(a);
    const bob = await device(b);
    const client = await malloryClient();
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish(inboxTopic(b, a), 'forged by mallory', { qos: 1 });
    await closed;
    await alice.transport.send(b, text('genuine'));
    await waitFor(() => bob.recorder.messages.length > 0, 'the genuine message');
    expect(bob.recorder.messages).toEqual([{ from: a, text: 'genuine' }]);
  });
});
