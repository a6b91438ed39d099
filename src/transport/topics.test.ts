import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Address } from '../model/types.ts';
import { mayPublish, maySubscribe } from './acl.ts';
import { Backoff } from './backoff.ts';
import { inboxFilter, inboxTopic, presenceOf, presenceTopic, senderOf } from './topics.ts';

const A: Address = `0x${'a'.repeat(40)}`;
const B: Address = `0x${'b'.repeat(40)}`;

describe('topics', () => {
  it('puts the recipient before the sender', () => {
    expect(inboxTopic(B, A)).toBe(`picopay/v1/inbox/${B}/${A}`);
    expect(inboxFilter(B)).toBe(`picopay/v1/inbox/${B}/+`);
    expect(senderOf(inboxTopic(B, A), B)).toBe(A);
    expect(presenceOf(presenceTopic(A))).toBe(A);
  });

  it('rejects anything but a lowercase address as sender or device', () => {
    for (const sender of ['', 'x', A.toUpperCase(), `${A}0`, `${A}/x`, A.slice(0, -1)]) {
      expect(senderOf(`picopay/v1/inbox/${B}/${sender}`, B)).toBeUndefined();
      expect(presenceOf(`picopay/v1/presence/${sender}`)).toBeUndefined();
    }
    expect(senderOf(inboxTopic(A, B), B)).toBeUndefined();
    expect(senderOf(`picopay/v2/inbox/${B}/${A}`, B)).toBeUndefined();
  });

  it('never takes an arbitrary topic for anything but a valid address', () => {
    const level = fc.oneof(fc.string(), fc.constantFrom(A, B, '+', '#', '', 'picopay', 'v1', 'inbox', 'presence'));
    fc.assert(
      fc.property(fc.array(level, { maxLength: 7 }), (levels) => {
        const topic = levels.join('/');
        for (const found of [senderOf(topic, B), presenceOf(topic)]) {
          expect(found === undefined || /^0x[0-9a-f]{40}$/.test(found)).toBe(true);
        }
      }),
    );
  });
});

describe('acl (docs/mqtt/acl)', () => {
  it('lets a device read only its own inbox and everyone\'s presence', () => {
    expect(maySubscribe(A, inboxFilter(A))).toBe(true);
    expect(maySubscribe(A, `picopay/v1/inbox/${A}/#`)).toBe(true);
    expect(maySubscribe(A, presenceTopic(B))).toBe(true);
    expect(maySubscribe(A, 'picopay/v1/presence/+')).toBe(true);
    expect(maySubscribe(A, inboxFilter(B))).toBe(false);
    expect(maySubscribe(A, 'picopay/v1/inbox/+/+')).toBe(false);
    expect(maySubscribe(A, 'picopay/v1/inbox/#')).toBe(false);
    expect(maySubscribe(A, 'picopay/#')).toBe(false);
    expect(maySubscribe(A, 'picopay/v1/presence/#')).toBe(false);
    expect(maySubscribe(A, `picopay/v1/presence/junk-${'x'.repeat(2000)}`)).toBe(false);
    expect(maySubscribe(A, `${inboxFilter(A).slice(0, -1)}junk-${'x'.repeat(2000)}`)).toBe(false);
    expect(maySubscribe(A, `${inboxFilter(A).slice(0, -1)}${B}`)).toBe(true);
    expect(maySubscribe(undefined, inboxFilter(A))).toBe(false);
    expect(maySubscribe('+', 'picopay/v1/inbox/+/+')).toBe(false);
  });

  it('lets a device write only under its own name', () => {
    expect(mayPublish(A, inboxTopic(B, A))).toBe(true);
    expect(mayPublish(A, presenceTopic(A))).toBe(true);
    expect(mayPublish(A, inboxTopic(A, B))).toBe(false);
    expect(mayPublish(A, `${inboxTopic(B, A)}/x`)).toBe(false);
    expect(mayPublish(A, `picopay/v1/inbox//${A}`)).toBe(false);
    expect(mayPublish(A, presenceTopic(B))).toBe(false);
    expect(mayPublish(undefined, inboxTopic(B, A))).toBe(false);
  });
});

describe('Backoff', () => {
  it('grows exponentially up to its bound and starts over after a reset', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 });
    expect([1, 2, 3, 4, 5, 6].map(() => backoff.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    backoff.reset();
    expect(backoff.next()).toBe(100);
  });

  it('spreads delays by the jitter', () => {
    expect(new Backoff({ initialMs: 100, jitter: 0.2 }, () => 0).next()).toBe(80);
    expect(new Backoff({ initialMs: 100, jitter: 0.2 }, () => 0.999999).next()).toBe(120);
  });
});
