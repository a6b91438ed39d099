import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudoRandomChunks, pseudoRandomSha256, startOrigin, type Origin } from './origin.ts';

describe('origin', () => {
  let origin: Origin;
  beforeAll(async () => {
    origin = await startOrigin();
  });
  afterAll(() => origin.close());

  it('serves /bytes/<n>: n deterministic bytes with a content-length', async () => {
    const response = await fetch(`${origin.url}/bytes/200000`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-length')).toBe('200000');
    const body = Buffer.from(await response.arrayBuffer());
    expect(body.length).toBe(200_000);
    expect(createHash('sha256').update(body).digest('hex')).toBe(pseudoRandomSha256(200_000));
    // A prefix of a longer body: the content depends on the offset only, not on n.
    expect(Buffer.concat([...pseudoRandomChunks(1000, 7)])).toEqual(body.subarray(0, 1000));
  });

  it('refuses other paths, methods and sizes', async () => {
    expect((await fetch(`${origin.url}/other`)).status).toBe(404);
    expect((await fetch(`${origin.url}/bytes/10`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${origin.url}/bytes/${2 ** 31}`)).status).toBe(413);
    expect((await fetch(`${origin.url}/bytes/0`)).status).toBe(200);
  });

  it('serves a body from an offset (Range: bytes=k-) and refuses one past its end', async () => {
    const whole = Buffer.concat([...pseudoRandomChunks(200_000)]);
    const response = await fetch(`${origin.url}/bytes/200000`, { headers: { range: 'bytes=70000-' } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe('bytes 70000-199999/200000');
    expect(Buffer.from(await response.arrayBuffer())).toEqual(whole.subarray(70_000));
    expect((await fetch(`${origin.url}/bytes/10`, { headers: { range: 'bytes=10-' } })).status).toBe(416);
  });

  it('holds a body at an offset until released', async () => {
    const hold = origin.hold(100_000);
    const response = await fetch(`${origin.url}/bytes/200000`);
    const reader = response.body!.getReader();
    let received = 0;
    const reading = (async () => {
      for (let r = await reader.read(); !r.done; r = await reader.read()) received += r.value.length;
    })();
    await hold.reached;
    expect(received).toBeLessThanOrEqual(100_000);
    hold.release();
    await reading;
    expect(received).toBe(200_000);
  });
});
