import { fileURLToPath } from 'node:url';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TransportError } from '../../src/errors.ts';
import type { Address } from '../../src/model/types.ts';
import { MqttTransport } from '../../src/transport/mqtt.ts';
import { inboxFilter, inboxTopic } from '../../src/transport/topics.ts';
import {
  mosquittoInstalled,
  randomAddress,
  Recorder,
  startMosquitto,
  testCertificates,
  text,
  waitFor,
  type Mosquitto,
  type TestCertificates,
} from './helpers.ts';
import { mqttTransportSuite } from './mqtt-suite.ts';

// CI installs mosquitto (.ci/run), so these run there; elsewhere they skip only when it is missing.
describe.skipIf(!mosquittoInstalled)('MqttTransport over Mosquitto', () => {
  describe('anonymous broker', () => {
    mqttTransportSuite(() => startMosquitto());
  });

  describe('over TLS', () => {
    let certificates: TestCertificates;
    let broker: Mosquitto;

    beforeAll(async () => {
      certificates = await testCertificates();
      broker = await startMosquitto({ tls: certificates });
    });

    afterAll(() => broker.stop());

    it('round-trips with a CA-verified broker', async () => {
      const [a, b] = [randomAddress(), randomAddress()];
      const transports = [a, b].map((self) => new MqttTransport({ url: broker.url, self, tls: { ca: certificates.ca } }));
      const [alice, bob] = transports as [MqttTransport, MqttTransport];
      const recorder = new Recorder();
      bob.setHandler(recorder);
      try {
        await Promise.all(transports.map((transport) => transport.connect()));
        await alice.send(b, text('over tls'));
        await waitFor(() => recorder.messages.length === 1, 'the message');
        expect(recorder.messages).toEqual([{ from: a, text: 'over tls' }]);
      } finally {
        await Promise.all(transports.map((transport) => transport.close()));
      }
    });

    it('does not connect to a broker it cannot verify', async () => {
      const transport = new MqttTransport({ url: broker.url, self: randomAddress(), connectTimeoutMs: 1_000 });
      await expect(transport.connect()).rejects.toThrow(/certificate/);
    });
  });

  describe('with passwords and the ACL of docs/mqtt', () => {
    const aclFile = fileURLToPath(new URL('../../docs/mqtt/acl', import.meta.url));
    const [a, b, mallory] = [randomAddress(), randomAddress(), randomAddress()];
    const password = (address: Address) => `secret-${address.slice(2, 10)}`;
    let broker: Mosquitto;
    const cleanups: (() => Promise<unknown>)[] = [];

    beforeAll(async () => {
      broker = await startMosquitto({
        users: [a, b, mallory].map((address) => ({ username: address, password: password(address) })),
        aclFile,
      });
    });

    // Each test closes its clients: a device left connected would fight the next test's
    // device with the same session id for the connection.
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
    });

    afterAll(() => broker.stop());

    async function device(self: Address): Promise<{ transport: MqttTransport; recorder: Recorder }> {
      const transport = new MqttTransport({ url: broker.url, self, password: password(self) });
      const recorder = new Recorder();
      transport.setHandler(recorder);
      cleanups.push(() => transport.close());
      await transport.connect();
      return { transport, recorder };
    }

    /** Mallory logs in properly but then tries to read and write what is not hers. */
    async function malloryClient(received: string[]): Promise<MqttClient> {
      const client = await connectAsync(broker.url, { username: mallory, password: password(mallory), reconnectPeriod: 0 });
      cleanups.push(() => client.endAsync(true));
      client.on('message', (topic) => received.push(topic));
      return client;
    }

    it('refuses a wrong password', async () => {
      const transport = new MqttTransport({ url: broker.url, self: a, password: 'wrong', connectTimeoutMs: 10_000 });
      await expect(transport.connect()).rejects.toBeInstanceOf(TransportError);
    });

    it("keeps a device out of another device's inbox", async () => {
      const alice = await device(a);
      const bob = await device(b);
      const malloryReceived: string[] = [];
      const client = await malloryClient(malloryReceived);
      // Mosquitto 2.0 grants these subscriptions but never delivers what the ACL forbids.
      await client.subscribeAsync([inboxFilter(b), 'picopay/v1/inbox/#', inboxFilter(mallory)], { qos: 1 });

      await alice.transport.send(b, text('for bob only'));
      await waitFor(() => bob.recorder.messages.length === 1, 'bob to get his message');

      // Mallory's own inbox is a barrier: the broker delivers to her in order, so once her
      // own message is in, bob's would have been too.
      await client.publishAsync(inboxTopic(mallory, mallory), 'barrier', { qos: 1 });
      await waitFor(() => malloryReceived.length > 0, 'the barrier');
      expect(malloryReceived).toEqual([inboxTopic(mallory, mallory)]);
    });

    it('lets devices watch each other\'s presence', async () => {
      const alice = await device(a);
      const bob = await device(b);
      alice.transport.watchPeer(b);
      await bob.transport.send(a, text('before leaving'));
      await waitFor(() => alice.recorder.messages.length === 1, 'the message');
      await bob.transport.close();
      await waitFor(() => alice.recorder.peersDown.length === 1, 'bob going offline');
      expect(alice.recorder.peersDown).toEqual([b]);
    });

    it('drops a message sent under another name', async () => {
      const alice = await device(a);
      const bob = await device(b);
      const client = await malloryClient([]);
      await client.publishAsync(inboxTopic(b, a), 'forged by mallory', { qos: 1 });
      await alice.transport.send(b, text('genuine'));
      await waitFor(() => bob.recorder.messages.length > 0, 'the genuine message');
      expect(bob.recorder.messages).toEqual([{ from: a, text: 'genuine' }]);
    });
  });
});
