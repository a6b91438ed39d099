import { describe, expect, it } from 'vitest';
import { TransportError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import { MemoryNetwork, type MemoryTransport } from './memory.ts';

const A: Address = '0x000000000000000000000000000000000000000a';
const B: Address = '0x000000000000000000000000000000000000000b';

interface Inbox {
  frames: number[];
  connected: number;
  peersDown: Address[];
}

/** Installs a handler that records what arrives; frames carry one byte, their sequence number (< 256). */
function listen(transport: MemoryTransport): Inbox {
  const inbox: Inbox = { frames: [], connected: 0, peersDown: [] };
  transport.setHandler({
    message: (_from, frame) => inbox.frames.push(frame[0] ?? -1),
    connected: () => inbox.connected++,
    peerDown: (peer) => inbox.peersDown.push(peer),
  });
  return inbox;
}

async function sendSequence(from: MemoryTransport, to: Address, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await from.send(to, Uint8Array.of(i));
}

function range(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i);
}

function pair(network: MemoryNetwork): { a: MemoryTransport; b: MemoryTransport; inbox: Inbox } {
  const a = network.endpoint(A);
  const b = network.endpoint(B);
  return { a, b, inbox: listen(b) };
}

describe('MemoryNetwork without faults', () => {
  it('delivers everything once, in order, and never inside send', async () => {
    const network = new MemoryNetwork();
    const { a, b, inbox } = pair(network);
    await a.send(B, Uint8Array.of(7));
    expect(inbox.frames).toEqual([]);
    await network.idle();
    expect(inbox.frames).toEqual([7]);

    const from: Address[] = [];
    b.setHandler({ message: (sender) => from.push(sender) });
    await a.send(B, Uint8Array.of(0));
    await network.idle();
    expect(from).toEqual([A]);
  });

  it('keeps FIFO order over many messages', async () => {
    const network = new MemoryNetwork();
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 200);
    await network.idle();
    expect(inbox.frames).toEqual(range(200));
  });

  it('copies frames so the sender may reuse its buffer', async () => {
    const network = new MemoryNetwork();
    const { a, inbox } = pair(network);
    const buffer = Uint8Array.of(1);
    await a.send(B, buffer);
    buffer[0] = 2;
    await network.idle();
    expect(inbox.frames).toEqual([1]);
  });

  it('waits in idle() for answers sent from a handler', async () => {
    const network = new MemoryNetwork();
    const a = network.endpoint(A);
    const b = network.endpoint(B);
    const inboxA = listen(a);
    b.setHandler({ message: (from, frame) => void b.send(from, frame) });
    await sendSequence(a, B, 3);
    await network.idle();
    expect(inboxA.frames).toEqual([0, 1, 2]);
  });

  it('refuses a second endpoint with the same address and sends after close', async () => {
    const network = new MemoryNetwork();
    const a = network.endpoint(A);
    expect(() => network.endpoint(A.toUpperCase().replace('0X', '0x') as Address)).toThrow(TransportError);
    await a.close();
    await expect(a.send(B, Uint8Array.of(0))).rejects.toBeInstanceOf(TransportError);
  });
});

describe('MemoryNetwork faults', () => {
  it('drops messages with the configured probability', async () => {
    const network = new MemoryNetwork({ seed: 7, faults: { drop: 0.5 } });
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 250);
    await network.idle();
    expect(inbox.frames.length).toBeGreaterThan(60);
    expect(inbox.frames.length).toBeLessThan(190);
    expect(network.stats.dropped).toBe(250 - inbox.frames.length);
    // What survives keeps its order.
    expect(inbox.frames).toEqual([...inbox.frames].sort((x, y) => x - y));
  });

  it('duplicates messages', async () => {
    const network = new MemoryNetwork({ seed: 7, faults: { duplicate: 0.5 } });
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 200);
    await network.idle();
    expect(network.stats.duplicated).toBeGreaterThan(50);
    expect(inbox.frames.length).toBe(200 + network.stats.duplicated);
    expect(new Set(inbox.frames)).toEqual(new Set(range(200)));
  });

  it('reorders messages with jitter, losing none', async () => {
    const network = new MemoryNetwork({ seed: 7, faults: { reorder: 0.5, jitterMs: 3 } });
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 100);
    await network.idle();
    expect(inbox.frames).not.toEqual(range(100));
    expect([...inbox.frames].sort((x, y) => x - y)).toEqual(range(100));
  });

  it('delays messages by a fixed time, keeping their order', async () => {
    const network = new MemoryNetwork({ faults: { delayMs: 2 } });
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 20);
    await new Promise((resolve) => setImmediate(resolve));
    expect(inbox.frames).toEqual([]);
    await network.idle();
    expect(inbox.frames).toEqual(range(20));
  });

  it('is reproducible from its seed', async () => {
    async function run(seed: number): Promise<number[]> {
      const network = new MemoryNetwork({ seed, faults: { drop: 0.3, duplicate: 0.3 } });
      const { a, inbox } = pair(network);
      await sendSequence(a, B, 100);
      await network.idle();
      return inbox.frames;
    }
    expect(await run(42)).toEqual(await run(42));
    expect(await run(42)).not.toEqual(await run(43));
  });

  it('accepts a custom generator', async () => {
    const network = new MemoryNetwork({ random: () => 0, faults: { drop: 0.01 } });
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 10);
    await network.idle();
    expect(inbox.frames).toEqual([]);
  });

  it('changes faults at run time', async () => {
    const network = new MemoryNetwork({ faults: { drop: 1 } });
    const { a, inbox } = pair(network);
    await sendSequence(a, B, 5);
    network.setFaults({});
    await sendSequence(a, B, 5);
    await network.idle();
    expect(inbox.frames).toEqual(range(5));
    expect(network.stats).toMatchObject({ sent: 10, dropped: 5, delivered: 5 });
  });
});

describe('MemoryNetwork disconnects', () => {
  it('loses messages to and from a disconnected party, then reconnects it', async () => {
    const network = new MemoryNetwork();
    const a = network.endpoint(A);
    const b = network.endpoint(B);
    const inboxA = listen(a);
    const inboxB = listen(b);

    network.disconnect(B);
    expect(network.isConnected(B)).toBe(false);
    await a.send(B, Uint8Array.of(1));
    await b.send(A, Uint8Array.of(2));
    await network.idle();
    expect(inboxA.frames).toEqual([]);
    expect(inboxB.frames).toEqual([]);

    network.reconnect(B);
    await network.idle();
    expect(inboxB.connected).toBe(1);
    expect(inboxA.connected).toBe(0);
    await a.send(B, Uint8Array.of(3));
    await b.send(A, Uint8Array.of(4));
    await network.idle();
    expect(inboxB.frames).toEqual([3]);
    expect(inboxA.frames).toEqual([4]);
  });

  it('loses messages already in flight when the recipient disconnects', async () => {
    const network = new MemoryNetwork({ faults: { delayMs: 1 } });
    const { a, inbox } = pair(network);
    await a.send(B, Uint8Array.of(1));
    network.disconnect(B);
    await network.idle();
    network.reconnect(B);
    expect(inbox.frames).toEqual([]);
  });

  it('replaces a detached party, silencing its old transport', async () => {
    const network = new MemoryNetwork();
    const a = network.endpoint(A);
    const crashed = network.endpoint(B);
    const inboxA = listen(a);
    network.detach(B);
    const restarted = network.endpoint(B);
    const inboxB = listen(restarted);

    await crashed.send(A, Uint8Array.of(1));
    await restarted.send(A, Uint8Array.of(2));
    await a.send(B, Uint8Array.of(3));
    await crashed.close();
    await a.send(B, Uint8Array.of(4));
    await network.idle();
    expect(inboxA.frames).toEqual([2]);
    expect(inboxB.frames).toEqual([3, 4]);
  });

  it('tells watchers, and only them, that a peer went down', async () => {
    const network = new MemoryNetwork();
    const a = network.endpoint(A);
    const b = network.endpoint(B);
    const inboxA = listen(a);
    const inboxB = listen(b);
    a.watchPeer(B);
    network.disconnect(B);
    network.disconnect(B);
    network.reconnect(B);
    network.disconnect(A);
    await network.idle();
    expect(inboxA.peersDown).toEqual([B]);
    expect(inboxB.peersDown).toEqual([]);
  });
});
