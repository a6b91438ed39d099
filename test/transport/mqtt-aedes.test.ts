import { connectAsync, ErrorWithSubackPacket, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TransportError } from '../../src/errors.ts';
import type { Address } from '../../src/model/types.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../src/transport/broker.ts';
import { MqttTransport } from '../../src/transport/mqtt.ts';
import { inboxFilter, inboxTopic, sessionIdOf } from '../../src/transport/topics.ts';
import { brokerAuthority, loginToken, MAX_LOGIN_TTL_S } from '../../src/transport/login.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { fromHex, toHex } from '../../src/model/hash.ts';
import { randomAddress, Recorder, text, waitFor } from './helpers.ts';
import { mqttTransportSuite, type BrokerUnderTest } from './mqtt-suite.ts';

/** The embedded broker keeps sessions in memory: a restart loses them, which the transport must survive. */
async function startAedes(): Promise<BrokerUnderTest> {
  let broker: EmbeddedBroker = await startEmbeddedBroker({ access: 'open' });
  const port = broker.port;
  return {
    url: broker.url,
    port,
    restart: async () => {
      await broker.close();
      broker = await startEmbeddedBroker({ port, access: 'open' });
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
      access: (username, secret) => username !== undefined && secret?.toString() === password(username as Address),
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

describe('the embedded broker by default: logins by picopay key, and the ACL', () => {
  const [alice, bob, mallory] = [Signer.random(), Signer.random(), Signer.random()];
  let broker: EmbeddedBroker;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    broker = await startEmbeddedBroker();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });
  afterAll(() => broker.close());

  const authority = (): string => brokerAuthority(broker.url);

  async function device(signer: Signer): Promise<{ transport: MqttTransport; recorder: Recorder }> {
    const transport = new MqttTransport({ url: broker.url, self: signer.address, signer, connectTimeoutMs: 10_000 });
    const recorder = new Recorder();
    transport.setHandler(recorder);
    cleanups.push(() => transport.close());
    await transport.connect();
    return { transport, recorder };
  }

  /** An outsider's raw client: resolves with the client, or the refusal. */
  async function raw(options: { username?: string; password?: string; clientId?: string; clean?: boolean }): Promise<MqttClient | Error> {
    return connectAsync(broker.url, { ...options, reconnectPeriod: 0, connectTimeout: 5_000 }).then(
      (client) => {
        cleanups.push(() => client.endAsync(true));
        return client;
      },
      (error: Error) => error,
    );
  }

  it('refuses an outsider without a key, with a wrong token, or with a token that is not for this login, this broker or now', async () => {
    const now = Math.floor(Date.now() / 1000);
    const twin = (token: string): string => {
      const sig = fromHex(token.split(':')[2]!);
      const s = BigInt(toHex(sig.subarray(32, 64)));
      const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
      const parts = token.split(':');
      return `${parts.slice(0, 2).join(':')}:${toHex(Uint8Array.from([...sig.subarray(0, 32), ...fromHex((N - s).toString(16).padStart(64, '0')), sig[64] === 27 ? 28 : 27]))}:${parts.slice(3).join(':')}`;
    };
    const attempts: { username?: string; password?: string }[] = [
      {},
      { username: mallory.address },
      { username: mallory.address, password: 'guess' },
      // Alice's token, presented under Bob's name.
      { username: bob.address, password: loginToken(alice, authority()) },
      // Made for another broker.
      { username: alice.address, password: loginToken(alice, 'broker.example:1883') },
      // Expired, and one valid for longer than a token may be.
      { username: alice.address, password: loginToken(alice, authority(), now - MAX_LOGIN_TTL_S - 1) },
      { username: alice.address, password: `v1:${now + 10 * MAX_LOGIN_TTL_S}:${loginToken(alice, authority()).split(':').slice(2).join(':')}` },
      // A valid signature for this broker, presented as made for another name of it that it does not have.
      { username: alice.address, password: `${loginToken(alice, authority()).split(':').slice(0, 3).join(':')}:elsewhere.example:1883` },
      // The high-s twin of a valid token.
      { username: alice.address, password: twin(loginToken(alice, authority())) },
    ];
    for (const attempt of attempts) expect(await raw(attempt), JSON.stringify(attempt)).toBeInstanceOf(Error);
    const good = await raw({ username: alice.address, password: loginToken(alice, authority()) });
    expect(good).not.toBeInstanceOf(Error);
  });

  it("no key may take over another's session, and with it its queue", async () => {
    const a = await device(alice);
    const hijack = await raw({ username: mallory.address, password: loginToken(mallory, authority()), clientId: sessionIdOf(alice.address), clean: false } as never);
    expect(hijack).toBeInstanceOf(Error);
    const b = await device(bob);
    await b.transport.send(alice.address, text('still hers'));
    await waitFor(() => a.recorder.messages.length > 0, 'the message to the session owner');
  });

  it('a logged-in device reads only its own inbox and writes only as itself; an outsider sees no payment', async () => {
    const a = await device(alice);
    const b = await device(bob);
    const spy = (await raw({ username: mallory.address, password: loginToken(mallory, authority()) })) as MqttClient;
    const refusal = await spy.subscribeAsync(['#', 'picopay/v1/inbox/#', inboxFilter(bob.address)]).catch((error: unknown) => error);
    expect((refusal as ErrorWithSubackPacket).packet.granted).toEqual([0x80, 0x80, 0x80]);
    const closed = new Promise<void>((resolve) => spy.once('close', () => resolve()));
    spy.publish(inboxTopic(bob.address, alice.address), 'forged by mallory', { qos: 1 });
    await closed;
    await a.transport.send(bob.address, text('genuine'));
    await waitFor(() => b.recorder.messages.length > 0, 'the genuine message');
    expect(b.recorder.messages).toEqual([{ from: alice.address, text: 'genuine' }]);
  });

  it('keeps no retained message but presence, and no message above a frame', async () => {
    const spy = (await raw({ username: mallory.address, password: loginToken(mallory, authority()) })) as MqttClient;
    const closed = new Promise<void>((resolve) => spy.once('close', () => resolve()));
    spy.publish(inboxTopic(bob.address, mallory.address), 'kept for ever', { qos: 1, retain: true });
    await closed;
    const big = (await raw({ username: mallory.address, password: loginToken(mallory, authority()) })) as MqttClient;
    const closedToo = new Promise<void>((resolve) => big.once('close', () => resolve()));
    big.publish(inboxTopic(bob.address, mallory.address), Buffer.alloc(65 * 1024), { qos: 1 });
    await closedToo;
    // Its own presence may be retained.
    const fine = (await raw({ username: mallory.address, password: loginToken(mallory, authority()) })) as MqttClient;
    await fine.publishAsync(`picopay/v1/presence/${mallory.address}`, 'online', { qos: 1, retain: true });
  });

  it("a last will is 'offline' whatever the device set: one that vanishes is seen offline", async () => {
    const { transport, recorder } = await device(alice);
    const down = new Promise<void>((resolve) => (recorder.peerDown = () => resolve()));
    const presence = `picopay/v1/presence/${mallory.address}`;
    const liar = (await connectAsync(broker.url, { username: mallory.address, password: loginToken(mallory, authority()), reconnectPeriod: 0, will: { topic: presence, payload: Buffer.from('online'), qos: 1, retain: true } })) as MqttClient;
    await liar.publishAsync(presence, 'online', { qos: 1, retain: true });
    transport.watchPeer(mallory.address);
    // It vanishes without a DISCONNECT: its will would say it is still there.
    liar.stream.destroy();
    await down;
  });

  it('a gateway watches every presence with one subscription, and reports only the peers it watches', async () => {
    const transport = new MqttTransport({ url: broker.url, self: alice.address, signer: alice, connectTimeoutMs: 10_000, watchAllPeers: true });
    const recorder = new Recorder();
    transport.setHandler(recorder);
    cleanups.push(() => transport.close());
    await transport.connect();
    transport.watchPeer(mallory.address);
    const seen: string[] = [];
    const down = new Promise<void>((resolve) => (recorder.peerDown = (peer) => {
      seen.push(peer);
      if (peer === mallory.address.toLowerCase()) resolve();
    }));
    const bobClient = (await connectAsync(broker.url, { username: bob.address, password: loginToken(bob, authority()), reconnectPeriod: 0 })) as MqttClient;
    await bobClient.publishAsync(`picopay/v1/presence/${bob.address}`, 'offline', { qos: 1, retain: true });
    await bobClient.endAsync();
    const liar = (await connectAsync(broker.url, { username: mallory.address, password: loginToken(mallory, authority()), reconnectPeriod: 0 })) as MqttClient;
    await liar.publishAsync(`picopay/v1/presence/${mallory.address}`, 'offline', { qos: 1, retain: true });
    await down;
    await liar.endAsync();
    // Bob went offline first, but nobody watches it.
    expect(seen).toEqual([mallory.address.toLowerCase()]);
  });

  it('a device logs in again with a fresh token after the broker restarts', async () => {
    const port = broker.port;
    const a = await device(alice);
    await broker.close();
    broker = await startEmbeddedBroker({ port });
    await waitFor(() => a.recorder.connections === 2, 'the second login');
    const b = await device(bob);
    await b.transport.send(alice.address, text('after the restart'));
    await waitFor(() => a.recorder.messages.length > 0, 'a message after the restart');
  });
});

describe('the embedded broker bounds what it keeps for an offline device', () => {
  it('past the queue limit new messages are dropped; the device gets what waited, and then new ones again', async () => {
    const [device, mallory] = [Signer.random(), Signer.random()];
    const broker = await startEmbeddedBroker({ queueLimits: { messages: 5, bytes: 100_000, totalBytes: 1 << 20 } });
    const login = (s: Signer): string => loginToken(s, brokerAuthority(broker.url));
    try {
      // The device has a session, then goes offline.
      const first = new MqttTransport({ url: broker.url, self: device.address, signer: device });
      first.setHandler(new Recorder());
      await first.connect();
      await first.close();
      const flooder = await connectAsync(broker.url, { username: mallory.address, password: login(mallory), reconnectPeriod: 0 });
      for (let i = 0; i < 50; i++) await flooder.publishAsync(inboxTopic(device.address, mallory.address), `m${i}`, { qos: 1 });
      const back = new MqttTransport({ url: broker.url, self: device.address, signer: device });
      const recorder = new Recorder();
      back.setHandler(recorder);
      await back.connect();
      await waitFor(() => recorder.messages.length >= 5, 'the queued messages');
      await flooder.publishAsync(inboxTopic(device.address, mallory.address), 'after', { qos: 1 });
      await waitFor(() => recorder.texts().includes('after'), 'a message after the queue drained');
      expect(recorder.texts()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'after']);
      await flooder.endAsync();
      await back.close();
    } finally {
      await broker.close();
    }
  });

  it('a device that is online gets every message of a burst past the limit, and is not cut off', async () => {
    const [device, mallory] = [Signer.random(), Signer.random()];
    const broker = await startEmbeddedBroker({ queueLimits: { messages: 5, bytes: 300_000, totalBytes: 200_000 } });
    try {
      const online = new MqttTransport({ url: broker.url, self: device.address, signer: device });
      const recorder = new Recorder();
      online.setHandler(recorder);
      await online.connect();
      const flooder = await connectAsync(broker.url, { username: mallory.address, password: loginToken(mallory, brokerAuthority(broker.url)), reconnectPeriod: 0 });
      await Promise.all(Array.from({ length: 40 }, (_, i) => flooder.publishAsync(inboxTopic(device.address, mallory.address), `${i}`.padEnd(60_000, '.'), { qos: 1 })));
      await waitFor(() => recorder.messages.length === 40, 'the whole burst');
      expect(recorder.connections).toBe(1);
      await flooder.endAsync();
      await online.close();
    } finally {
      await broker.close();
    }
  });
});
