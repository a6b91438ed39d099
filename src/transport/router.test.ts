import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { TransportError } from '../errors.ts';
import type { Address } from '../model/types.ts';
import { MemoryNetwork } from './memory.ts';
import { RoutedTransport } from './router.ts';
import type { Transport, TransportHandler } from './types.ts';

/** A near link whose peers come and go as the test says (what a BLE link reports). */
class ScriptedLink implements Transport {
  handler: TransportHandler | undefined;
  readonly sent: { to: Address; frame: Uint8Array }[] = [];
  failing = false;
  constructor(readonly self: Address) {}
  async send(to: Address, frame: Uint8Array): Promise<void> {
    if (this.failing) throw new TransportError('link lost');
    this.sent.push({ to, frame });
  }
  setHandler(handler: TransportHandler): void {
    this.handler = handler;
  }
  async close(): Promise<void> {}
}

const [me, peer, gateway] = [Signer.random().address, Signer.random().address, Signer.random().address];
const bytes = (n: number) => new Uint8Array([n]);

function routed() {
  const network = new MemoryNetwork();
  const near = new ScriptedLink(me);
  const far = network.endpoint(me);
  const router = new RoutedTransport(near, far);
  const got: [Address, number][] = [];
  const presence: string[] = [];
  router.setHandler({ message: (from, frame) => got.push([from, frame[0]!]), peerUp: (p) => presence.push(`up ${p}`), peerDown: (p) => presence.push(`down ${p}`) });
  const farPeer = network.endpoint(peer);
  const farPeerGot: number[] = [];
  farPeer.setHandler({ message: (_from, frame) => farPeerGot.push(frame[0]!) });
  return { network, near, router, got, presence, farPeerGot };
}

describe('routing between a near link and a far one', () => {
  it('sends over the near link while the peer is on it, else over the far one; the gateway always far', async () => {
    const { network, near, router, farPeerGot } = routed();
    await router.send(peer, bytes(1));
    near.handler!.peerUp!(peer);
    await router.send(peer, bytes(2));
    await router.send(gateway, bytes(3));
    near.handler!.peerDown!(peer);
    await router.send(peer, bytes(4));
    await network.idle();
    expect(near.sent.map((s) => s.frame[0])).toEqual([2]);
    expect(farPeerGot).toEqual([1, 4]);
  });

  it('a frame from the peer over the near link brings the link up; a failed near send goes far and takes the link down', async () => {
    const { network, near, router, got, farPeerGot } = routed();
    near.handler!.message(peer, bytes(7));
    expect(router.isNear(peer)).toBe(true);
    near.failing = true;
    await router.send(peer, bytes(8));
    await network.idle();
    expect(farPeerGot).toEqual([8]);
    expect(router.isNear(peer)).toBe(false);
    expect(got).toEqual([[peer, 7]]);
  });

  it('frames from both links reach the one handler', async () => {
    const { network, near, got } = routed();
    near.handler!.message(peer, bytes(1));
    await network.endpoint(gateway).send(me, bytes(2));
    await network.idle();
    expect(got).toEqual([
      [peer, 1],
      [gateway, 2],
    ]);
  });

  it('a peer is down for the agent only when no link has it, and up again with the first', async () => {
    const { network, near, router, presence } = routed();
    router.watchPeer(peer);
    near.handler!.peerUp!(peer);
    network.disconnect(peer);
    await new Promise((r) => setImmediate(r));
    expect(presence).toEqual([]);
    near.handler!.peerDown!(peer);
    expect(presence).toEqual([`down ${peer}`]);
    near.handler!.peerUp!(peer);
    expect(presence).toEqual([`down ${peer}`, `up ${peer}`]);
  });

  it('refuses links of two different addresses', () => {
    expect(() => new RoutedTransport(new ScriptedLink(peer), new MemoryNetwork().endpoint(me))).toThrow(TransportError);
  });
});
