import { connectAsync, type MqttClient } from 'mqtt';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { TransportError } from '../../src/errors.ts';
import type { Address } from '../../src/model/types.ts';
import { MqttTransport, type MqttTransportOptions } from '../../src/transport/mqtt.ts';
import { inboxTopic, presenceTopic } from '../../src/transport/topics.ts';
import { freePort, randomAddress, Recorder, startTcpProxy, text, waitFor, type TcpProxy } from './helpers.ts';

export interface BrokerUnderTest {
  readonly url: string;
  readonly port: number;
  /** Stops the broker and starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Fast retries so that tests do not wait for the production backoff. */
const FAST_BACKOFF = { initialMs: 20, maxMs: 200 };

/** The behaviour every broker must give MqttTransport; run once per broker. */
export function mqttTransportSuite(startBroker: () => Promise<BrokerUnderTest>): void {
  let broker: BrokerUnderTest;
  let cleanups: (() => Promise<unknown>)[] = [];

  beforeEach(async () => {
    broker = await startBroker();
    cleanups = [];
  });

  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await broker.stop();
  });

  async function device(
    self: Address,
    overrides: Partial<MqttTransportOptions> = {},
    recorder = new Recorder(),
  ): Promise<{ transport: MqttTransport; recorder: Recorder }> {
    const transport = new MqttTransport({ url: broker.url, self, backoff: FAST_BACKOFF, ...overrides });
    transport.setHandler(recorder);
    cleanups.push(() => transport.close());
    await transport.connect();
    return { transport, recorder };
  }

  async function rawClient(): Promise<MqttClient> {
    const client = await connectAsync(broker.url, { reconnectPeriod: 0 });
    cleanups.push(() => client.endAsync(true));
    return client;
  }

  async function proxy(): Promise<TcpProxy> {
    const relay = await startTcpProxy(broker.port);
    cleanups.push(() => relay.close());
    return relay;
  }

  it('delivers a message and its reply, naming the sender', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const alice = await device(a);
    const bob = await device(b);
    expect(alice.recorder.connections).toBe(1);

    await alice.transport.send(b, text('ping'));
    await waitFor(() => bob.recorder.messages.length === 1, 'ping');
    expect(bob.recorder.messages).toEqual([{ from: a, text: 'ping' }]);

    const binary = Uint8Array.from({ length: 4096 }, (_, i) => i % 256);
    const received: Uint8Array[] = [];
    alice.transport.setHandler({ message: (_from, frame) => received.push(frame.slice()) });
    await bob.transport.send(a.toUpperCase().replace('0X', '0x') as Address, binary);
    await waitFor(() => received.length === 1, 'binary reply');
    expect(received[0]).toEqual(binary);
  });

  it('keeps messages for an offline device until it comes back', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const alice = await device(a);
    const firstBob = await device(b);
    await firstBob.transport.close();

    for (const word of ['one', 'two', 'three']) await alice.transport.send(b, text(word));
    await waitFor(() => alice.transport.pendingSends === 0, 'the broker to take the messages');

    const bob = await device(b);
    await waitFor(() => bob.recorder.messages.length === 3, 'the stored messages');
    expect(bob.recorder.texts()).toEqual(['one', 'two', 'three']);
    expect(firstBob.recorder.messages).toEqual([]);
  });

  it('reports a peer down when its connection dies, and the peer comes back by itself', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const relay = await proxy();
    const bob = await device(b, { url: `mqtt://127.0.0.1:${relay.port}` });
    const alice = await device(a);
    alice.transport.watchPeer(b);
    alice.transport.watchPeer(b);

    relay.cut();
    await waitFor(() => alice.recorder.peersDown.length === 1, 'the last will');
    expect(alice.recorder.peersDown).toEqual([b]);

    await waitFor(() => bob.recorder.connections === 2, 'bob to reconnect');
    await alice.transport.send(b, text('still there?'));
    await waitFor(() => bob.recorder.messages.length === 1, 'a message after reconnecting');
    expect(alice.recorder.peersDown).toEqual([b]);
  });

  it('reports a peer down when it closes', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const alice = await device(a);
    const bob = await device(b);
    alice.transport.watchPeer(b);
    await alice.transport.send(b, text('hello'));
    await waitFor(() => bob.recorder.messages.length === 1, 'hello');

    await bob.transport.close();
    await waitFor(() => alice.recorder.peersDown.length === 1, 'the offline presence');
    expect(alice.recorder.peersDown).toEqual([b]);
  });

  it('watches peers named before connecting, also when the broker kept its session', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const bob = await device(b);
    const firstAlice = await device(a);
    await firstAlice.transport.close();

    const alice = new MqttTransport({ url: broker.url, self: a, backoff: FAST_BACKOFF });
    const recorder = new Recorder();
    alice.setHandler(recorder);
    alice.watchPeer(b);
    cleanups.push(() => alice.close());
    await alice.connect();
    await bob.transport.send(a, text('hello'));
    await waitFor(() => recorder.messages.length === 1, 'the message');

    await bob.transport.close();
    await waitFor(() => recorder.peersDown.length === 1, 'bob going offline');
    expect(recorder.peersDown).toEqual([b]);
  });

  it('gives up connecting when closed meanwhile', async () => {
    const transport = new MqttTransport({ url: `mqtt://127.0.0.1:${await freePort()}`, self: randomAddress(), backoff: FAST_BACKOFF });
    const connecting = transport.connect();
    await transport.close();
    await expect(connecting).rejects.toBeInstanceOf(TransportError);
  });

  it('makes senders wait for acknowledgements beyond maxPendingSends', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const alice = await device(a, { maxPendingSends: 2 });
    const bob = await device(b);
    const words = Array.from({ length: 20 }, (_, i) => `m${i}`);
    await Promise.all(words.map((word) => alice.transport.send(b, text(word))));
    await waitFor(() => bob.recorder.messages.length === words.length, 'every message');
    expect(bob.recorder.texts().sort()).toEqual([...words].sort());
  });

  it('queues up to maxPendingSends while offline, then refuses', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const relay = await proxy();
    const alice = await device(a, { url: `mqtt://127.0.0.1:${relay.port}`, maxPendingSends: 2 });
    await relay.close();
    await waitFor(() => !alice.transport.isConnected, 'alice to notice');
    await alice.transport.send(b, text('1'));
    await alice.transport.send(b, text('2'));
    await expect(alice.transport.send(b, text('3'))).rejects.toBeInstanceOf(TransportError);
  });

  it('reconnects after the broker restarts', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const alice = await device(a);
    const bob = await device(b);

    await broker.restart();
    await waitFor(() => alice.recorder.connections === 2 && bob.recorder.connections === 2, 'both to reconnect');

    await alice.transport.send(b, text('after restart'));
    await waitFor(() => bob.recorder.messages.length === 1, 'a message after the restart');
    await bob.transport.send(a, text('reply'));
    await waitFor(() => alice.recorder.messages.length === 1, 'the reply');
    expect(alice.recorder.messages).toEqual([{ from: b, text: 'reply' }]);
  });

  it('drops garbage on its topics and a throwing handler without stopping', async () => {
    const [a, b] = [randomAddress(), randomAddress()];
    const alice = await device(a);
    const bob = await device(b, { maxFrameBytes: 1024 }, new RecorderThrowingOnBoom());
    bob.transport.watchPeer(a);

    const intruder = await rawClient();
    const garbage = randomBytesLike(64);
    await intruder.publishAsync(`picopay/v1/inbox/${b}/not-an-address`, garbage, { qos: 1 });
    await intruder.publishAsync(`picopay/v1/inbox/${b}/${a.toUpperCase()}`, garbage, { qos: 1 });
    await intruder.publishAsync(inboxTopic(b, a), Buffer.alloc(2048), { qos: 1 });
    await intruder.publishAsync(presenceTopic(a), garbage, { qos: 1 });
    await alice.transport.send(b, text('boom'));
    await alice.transport.send(b, text('valid'));

    await waitFor(() => bob.recorder.messages.length === 1, 'the valid message');
    expect(bob.recorder.messages).toEqual([{ from: a, text: 'valid' }]);
    expect(bob.recorder.peersDown).toEqual([]);
    expect(bob.transport.isConnected).toBe(true);
  });

  it('refuses frames over the limit, bad addresses and sends after close', async () => {
    const a = randomAddress();
    const alice = await device(a, { maxFrameBytes: 100 });
    await expect(alice.transport.send(randomAddress(), new Uint8Array(101))).rejects.toBeInstanceOf(TransportError);
    await expect(alice.transport.send('0x1234', new Uint8Array(1))).rejects.toBeInstanceOf(TransportError);
    await alice.transport.close();
    await expect(alice.transport.send(randomAddress(), new Uint8Array(1))).rejects.toBeInstanceOf(TransportError);
  });
}

class RecorderThrowingOnBoom extends Recorder {
  override message(from: Address, frame: Uint8Array): void {
    if (Buffer.from(frame).toString() === 'boom') throw new Error('handler bug');
    super.message(from, frame);
  }
}

function randomBytesLike(size: number): Buffer {
  return Buffer.from(Array.from({ length: size }, (_, i) => (i * 131 + 7) % 256));
}
