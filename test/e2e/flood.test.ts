import { readFileSync } from 'node:fs';
import { connectAsync } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { PicopayProcess } from '../../demo/processes.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { brokerAuthority, loginToken } from '../../src/transport/login.ts';
import { MqttTransport } from '../../src/transport/mqtt.ts';
import { inboxTopic } from '../../src/transport/topics.ts';
import { Recorder, waitFor } from '../transport/helpers.ts';

// An outsider with a key of its own floods the inbox of a device that is offline, through
// the gateway's embedded broker, the gateway running as its own process. The broker keeps
// at most its per-session limit (DEFAULT_QUEUE_LIMITS: 1,000 messages, 1 MiB) for the
// device; the gateway's resident memory stays within 20 MB of where it was, where keeping
// the flood would take 40 MB.

const MB = 1 << 20;
const rssOf = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

describe("the gateway's broker under an outsider", () => {
  it('refuses logins without the key, shows nothing to a logged-in outsider, and an outsider flooding an offline inbox with 40 MB leaves the gateway within 20 MB of its memory', async () => {
    const gateway = new PicopayProcess('gateway', ['gateway', '--data-dir', tempDir('picopay-flood-')], { env: { PICOPAY_LOG: 'error' }, stderr: 'ignore' });
    try {
      const mqttUrl = (await gateway.next('ready')).mqttUrl as string;
      const [device, mallory] = [Signer.random(), Signer.random()];
      // An outsider without a key gets no connection; one with a key of its own reads nothing of others.
      for (const login of [{}, { username: mallory.address, password: 'guess' }, { username: device.address, password: loginToken(mallory, brokerAuthority(mqttUrl)) }]) {
        await expect(connectAsync(mqttUrl, { ...login, reconnectPeriod: 0, connectTimeout: 5_000 })).rejects.toThrow(/Not authorized|Bad username/);
      }
      const spy = await connectAsync(mqttUrl, { username: mallory.address, password: loginToken(mallory, brokerAuthority(mqttUrl)), reconnectPeriod: 0 });
      const denied = await spy.subscribeAsync(['#', 'picopay/v1/inbox/#']).then((g) => g.map((x) => x.qos), (err: { packet?: { granted: number[] } }) => err.packet?.granted ?? []);
      expect(denied).toEqual([128, 128]);
      await spy.endAsync(true);
      const offline = new MqttTransport({ url: mqttUrl, self: device.address, signer: device });
      offline.setHandler(new Recorder());
      await offline.connect();
      await offline.close();
      const flooder = await connectAsync(mqttUrl, { username: mallory.address, password: loginToken(mallory, brokerAuthority(mqttUrl)), reconnectPeriod: 0 });
      const payload = Buffer.alloc(2048, 7);
      const flood = async (count: number): Promise<void> => {
        for (let sent = 0; sent < count; sent += 500) {
          await Promise.all(Array.from({ length: 500 }, () => flooder.publishAsync(inboxTopic(device.address, mallory.address), payload, { qos: 1 })));
        }
      };
      // Fill the device's queue to its limit first: what follows is all beyond it.
      await flood(2_000);
      const before = rssOf(gateway.child.pid!);
      await flood(20_000);
      const after = rssOf(gateway.child.pid!);
      expect(after - before).toBeLessThan(20 * MB);
      await flooder.endAsync();
      // The device comes back to at most the limit, and its inbox works again.
      const back = new MqttTransport({ url: mqttUrl, self: device.address, signer: device });
      const recorder = new Recorder();
      back.setHandler(recorder);
      await back.connect();
      await waitFor(() => recorder.messages.length >= 1, 'the queued messages', 30_000);
      expect(recorder.messages.length).toBeLessThanOrEqual(1000);
      await back.close();
    } finally {
      await gateway.stop();
    }
  }, 180_000);
});
