import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEnrollment, type Enrollment } from '../../gateway/enrollment.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { silentLogger } from '../../src/log.ts';
import { brokerAuthority, brokerPassword } from '../../src/transport/login.ts';
import { MqttTransport } from '../../src/transport/mqtt.ts';
import { ENROLL_LOGIN, enrollTopic, inboxTopic, sessionIdOf } from '../../src/transport/topics.ts';
import { DYNSEC_PLUGIN, mosquittoInstalled, Recorder, startMosquitto, text, waitFor, type Mosquitto } from './helpers.ts';

// A real Mosquitto with its dynamic-security plugin, logins issued by the gateway's
// enrollment (gateway/enrollment.ts): a device with a key gets one by proving the key; an
// outsider without one can read nothing, write nothing but an enrollment, and take over
// no device's session; a forged enrollment creates nothing.

const ADMIN = { username: 'picopay-admin', password: 'admin-secret' };

describe.skipIf(!mosquittoInstalled || !DYNSEC_PLUGIN)('Mosquitto logins issued to enrolled keys', () => {
  let broker: Mosquitto;
  let enrollment: Enrollment;
  const cleanups: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    broker = await startMosquitto({ dynsec: ADMIN });
    enrollment = await startEnrollment({ url: broker.url, admin: ADMIN, logger: silentLogger });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });
  afterAll(async () => {
    await enrollment?.close();
    await broker?.stop();
  });

  async function device(signer: Signer): Promise<{ transport: MqttTransport; recorder: Recorder }> {
    const transport = new MqttTransport({ url: broker.url, self: signer.address, signer, enroll: true, connectTimeoutMs: 15_000, backoff: { initialMs: 50, maxMs: 500 } });
    const recorder = new Recorder();
    transport.setHandler(recorder);
    cleanups.push(() => transport.close());
    await transport.connect();
    return { transport, recorder };
  }

  async function raw(options: { username?: string; password?: string; clientId?: string; clean?: boolean } = {}): Promise<MqttClient | Error> {
    return connectAsync(broker.url, { ...options, reconnectPeriod: 0, connectTimeout: 5_000 }).then(
      (client) => (cleanups.push(() => client.endAsync(true)), client),
      (error: Error) => error,
    );
  }

  it('a device enrolls by proving its key, then pays another: only its own inbox, only as itself', async () => {
    const [alice, bob] = [Signer.random(), Signer.random()];
    const a = await device(alice);
    const b = await device(bob);
    await a.transport.send(bob.address, text('genuine'));
    await waitFor(() => b.recorder.messages.length > 0, 'the genuine message');
    // Carol, enrolled and logged in, writes to Bob as Alice: Mosquitto drops it.
    const carol = Signer.random();
    await (await device(carol)).transport.close();
    const carolRaw = (await raw({ username: carol.address, password: brokerPassword(carol, brokerAuthority(broker.url)), clientId: sessionIdOf(carol.address) })) as MqttClient;
    await carolRaw.publishAsync(inboxTopic(bob.address, alice.address), 'forged by carol', { qos: 1 });
    await a.transport.send(bob.address, text('second'));
    await waitFor(() => b.recorder.messages.length > 1, 'the second message');
    expect(b.recorder.messages).toEqual([
      { from: alice.address, text: 'genuine' },
      { from: alice.address, text: 'second' },
    ]);
  });

  it('an outsider without a key reads nothing, not even enrollments, writes nothing but an enrollment, and takes over no session', async () => {
    const alice = Signer.random();
    const a = await device(alice);
    expect(await raw()).toBeInstanceOf(Error); // anonymous: no connection at all
    const enroller = { username: ENROLL_LOGIN, password: ENROLL_LOGIN };
    // Alice's session, claimed by the enrollment login or by another device's login: refused.
    const other = Signer.random();
    await device(other);
    for (const login of [enroller, { username: other.address, password: brokerPassword(other, brokerAuthority(broker.url)) }]) {
      expect(await raw({ ...login, clientId: sessionIdOf(alice.address), clean: false }), login.username).toBeInstanceOf(Error);
    }
    const spy = (await raw({ ...enroller, clientId: ENROLL_LOGIN })) as MqttClient;
    const granted = await spy.subscribeAsync(['#', 'picopay/v1/enroll/+', `picopay/v1/inbox/${alice.address}/+`]).then((g) => g.map((x) => x.qos), () => [128, 128, 128]);
    expect(granted.every((qos) => qos === 128)).toBe(true);
    await spy.publishAsync(inboxTopic(alice.address, Signer.random().address), 'from nowhere', { qos: 1 });
    const bob = Signer.random();
    const b = await device(bob);
    await b.transport.send(alice.address, text('from bob'));
    await waitFor(() => a.recorder.messages.length > 0, "bob's message");
    expect(a.recorder.texts()).toEqual(['from bob']);
  });

  it('a forged enrollment, or a password made for another broker, creates no login', async () => {
    const [victim, mallory] = [Signer.random(), Signer.random()];
    const anonymous = (await raw({ username: ENROLL_LOGIN, password: ENROLL_LOGIN, clientId: ENROLL_LOGIN })) as MqttClient;
    const forged = brokerPassword(mallory, brokerAuthority(broker.url)); // Mallory's signature, in the victim's name
    const elsewhere = brokerPassword(victim, 'broker.example:1883');
    for (const password of [forged, elsewhere, 'guess']) await anonymous.publishAsync(enrollTopic(victim.address), password, { qos: 1 });
    // A real enrollment after them: the login exists once the gateway has issued it; none of the forgeries does.
    const other = Signer.random();
    await device(other);
    for (const password of [forged, elsewhere, 'guess', brokerPassword(victim, brokerAuthority(broker.url))]) {
      expect(await raw({ username: victim.address, password }), password).toBeInstanceOf(Error);
    }
  });
});
