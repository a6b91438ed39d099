import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChannelKind, type Bytes32 } from '../model/types.ts';
import { CHAIN, makeParty, type Party, RecordingSigner, sleep, stoppedAfterEach, tempDir, until } from '../testing/agents.ts';
import { gatewayNetwork } from '../testing/gateway.ts';
import { Signer } from '../crypto/keys.ts';
import { silentLogger } from '../log.ts';
import { InvalidAllocationError, OpenRejectedError } from '../errors.ts';
import { MAX_LOCKED } from '../model/allocation.ts';
import { aliasOf } from '../channel/record.ts';
import { decodeMessage, encodeMessage } from '../wire/codec.ts';
import { type Message, MessageType, RejectReason } from '../wire/messages.ts';
import { proposeOpen } from '../channel/open.ts';
import { closeRequest, openReject, openRejectedBy, updateReject } from '../channel/control.ts';
import { domainSeparator, openDigest, toHex } from '../model/hash.ts';
import { MAX_CHALLENGE_DURATION, MIN_CHALLENGE_DURATION } from '../model/duration.ts';
import { ChannelStore } from '../store/store.ts';
import { Intermediary } from './intermediary.ts';
import type { Agent } from './agent.ts';
import type { UpdateContext } from './types.ts';
import type { ChannelRecord } from '../channel/record.ts';
import { lockOutcome } from '../channel/virtual.ts';
import { channelId } from '../model/channelId.ts';
import type { Address } from '../model/types.ts';
import { join } from 'node:path';

const live = stoppedAfterEach();
const ETH = '0x0000000000000000000000000000000000000000' as const;

const balancesOf = (p: Party, id: Bytes32) => p.agent.channel(id).current.state.outcome.balances[0]!;
const gatewayTotal = (g: Party, la: Bytes32, lb: Bytes32): bigint => {
  let sum = 0n;
  for (const id of [la, lb]) {
    const rec = g.agent.channel(id);
    sum += rec.current.state.outcome.balances[0]![rec.idx];
  }
  return sum;
};

describe('virtual channels through a gateway', () => {
  it('stream: funded from both parents, paid by vouchers, settled back into both', async () => {
    const { a, b, g, la, lb } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    expect(await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id))).toBe(true);
    expect(balancesOf(a, la)).toEqual([70n, 100n]);
    expect(balancesOf(b, lb)).toEqual([50n, 70n]);
    const received: bigint[] = [];
    b.agent.on('voucher', (e) => received.push(e.cumulative));
    for (let i = 0; i < 10; i++) a.agent.payStream(vc.id, 2n);
    expect(await until(() => received.at(-1) === 20n)).toBe(true);
    await b.agent.settleVirtual(vc.id);
    expect(await until(() => a.agent.isSettled(vc.id))).toBe(true);
    expect(balancesOf(a, la)).toEqual([80n, 120n]);
    expect(balancesOf(b, lb)).toEqual([70n, 80n]);
    expect(gatewayTotal(g, la, lb)).toBe(200n);
    expect(g.agent.channel(la).current.state.outcome.locked).toEqual([]);
  });

  it('stream flow control: a payer pacing itself by acknowledgements never runs more than its window ahead, even when messages are lost', async () => {
    const { a, b, g, network } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[100n, 0n]] });
    await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id));
    network.setFaults({ drop: 0.2, duplicate: 0.1, reorder: 0.2 });
    const window = 4n;
    const held = (): bigint => b.agent.channel(vc.id).voucher?.cumulative ?? 0n;
    for (let i = 0; i < 60; i++) {
      await a.agent.streamWindow(vc.id, window);
      const paid = a.agent.channel(vc.id).voucher?.cumulative ?? 0n;
      expect(paid - held()).toBeLessThanOrEqual(window);
      a.agent.payStream(vc.id, 1n);
    }
    network.setFaults({});
    await a.agent.streamWindow(vc.id, 0n);
    expect(held()).toBe(60n);
    expect(a.agent.streamUnacked(vc.id)).toBe(0n);
    // An acknowledgement of more than was paid is refused and changes nothing.
    const refused: string[] = [];
    a.agent.on('rejected', (e) => refused.push(e.error.code));
    a.agent.payStream(vc.id, 1n);
    await b.transport.send(a.signer.address, encodeMessage({ type: MessageType.VoucherAck, alias: aliasOf(vc.id), cumulative: 1000n }));
    await network.idle();
    expect(refused).toContain('INVALID_ALLOCATION');
    expect(a.agent.streamUnacked(vc.id) <= 1n).toBe(true);
  });

  it('bidirectional: both pay, the gateway stays out, settle puts each parent right', async () => {
    const { a, b, g, la, lb } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[30n, 10n]] });
    await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id));
    await a.agent.pay(vc.id, 5n);
    await b.agent.pay(vc.id, 2n);
    await a.agent.settleVirtual(vc.id);
    expect(await until(() => b.agent.isSettled(vc.id))).toBe(true);
    // A ends with 27 in the VC, B with 13: A's parent pays A 27, G 13; B's parent pays G 27, B 13.
    expect(balancesOf(a, la)).toEqual([70n + 27n, 90n + 13n]);
    expect(balancesOf(b, lb)).toEqual([40n + 13n, 70n + 27n]);
    expect(gatewayTotal(g, la, lb)).toBe(200n);
  });

  it("a payment made as soon as the payer's side is funded waits at the payee until its side is", async () => {
    const { a, b, g } = await gatewayNetwork(live);
    // Everything the gateway sends B arrives 100 ms late: A is funded well before B.
    const send = g.transport.send.bind(g.transport);
    g.transport.send = async (to, frame) => {
      if (to !== b.signer.address) return send(to, frame);
      setTimeout(() => void send(to, frame), 100);
    };
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[30n, 10n]] });
    expect(b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id)).toBe(false);
    const paid = await a.agent.pay(vc.id, 5n);
    expect(b.agent.isFunded(vc.id)).toBe(true);
    expect(paid.state.outcome.balances).toEqual([[25n, 15n]]);
    expect(b.agent.channel(vc.id).current.state.outcome.balances).toEqual([[25n, 15n]]);
  });

  it('a settlement refused because one request came after the hold time is asked for again until it goes through', async () => {
    const { a, b, g, la, lb } = await gatewayNetwork(live, { holdTimeoutMs: 200 });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[10n, 0n]] });
    await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id));
    // For a while, B's messages to the gateway take longer than the gateway holds A's request.
    const send = b.transport.send.bind(b.transport);
    b.transport.send = async (to, frame) => {
      if (to !== g.signer.address) return send(to, frame);
      setTimeout(() => void send(to, frame), 400);
    };
    const settled = a.agent.settleVirtual(vc.id).catch(() => undefined);
    await sleep(1000); // long enough for the gateway to refuse both requests at least once
    b.transport.send = send;
    await settled;
    expect(await until(() => a.agent.isSettled(vc.id) && b.agent.isSettled(vc.id), 10_000)).toBe(true);
    expect(a.agent.channel(la).current.state.outcome.locked).toEqual([]);
    expect(b.agent.channel(lb).current.state.outcome.locked).toEqual([]);
  });

  it("the gateway's fee: each device pays it in the update that funds its side, and the gateway ends with what it locked plus both fees", async () => {
    const { a, b, g, la, lb } = await gatewayNetwork(live, { fees: { gateway: 2n, devices: 2n } });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[30n, 10n]] });
    await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id));
    expect(balancesOf(a, la)).toEqual([100n - 30n - 2n, 100n - 10n + 2n]);
    expect(balancesOf(b, lb)).toEqual([50n - 10n - 2n, 100n - 30n + 2n]);
    await a.agent.pay(vc.id, 5n);
    await a.agent.settleVirtual(vc.id);
    expect(await until(() => b.agent.isSettled(vc.id))).toBe(true);
    expect(gatewayTotal(g, la, lb)).toBe(200n + 4n);
  });

  it('a device that does not pay the fee is refused, and nothing stays locked', async () => {
    const { a, b, g, la } = await gatewayNetwork(live, { holdTimeoutMs: 500, fees: { gateway: 2n, devices: 0n } });
    await expect(a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[30n, 0n]] })).rejects.toThrow();
    expect(await until(() => !a.agent.channel(la).staged)).toBe(true);
    expect(balancesOf(a, la)).toEqual([100n, 100n]);
  });

  it('refuses to fund into a ledger channel that is being settled on-chain, checked when the pair is complete: nothing stays locked', async () => {
    const frozen = new Set<string>();
    const { a, b, g, la, lb } = await gatewayNetwork(live, { holdTimeoutMs: 2000, frozen });
    // A's channel went on-chain (the policy of this test holds its request anyway): the pair is refused once B's arrives.
    frozen.add(la);
    const opened = a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await expect(opened).rejects.toThrow();
    expect(await until(() => !a.agent.channel(la).staged && !b.agent.channel(lb).staged)).toBe(true);
    expect(balancesOf(a, la)).toEqual([100n, 100n]);
    expect(balancesOf(b, lb)).toEqual([50n, 100n]);
  });

  it('refuses to fund when the other device never asks: nothing stays locked', async () => {
    const { a, b, g, la, network } = await gatewayNetwork(live, { holdTimeoutMs: 200 });
    // B vanishes right after the open, so only A's funding request reaches G.
    const opened = a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await until(() => b.agent.channels().length > 1);
    network.disconnect(b.signer.address);
    await expect(opened).rejects.toThrow();
    expect(await until(() => !a.agent.channel(la).staged)).toBe(true);
    expect(balancesOf(a, la)).toEqual([100n, 100n]);
  });

  it('gateway neutrality: whatever A and B sign, G gets back what it locked plus its fees (faults included)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.bigInt({ min: 0n, max: 50n }),
        fc.bigInt({ min: 0n, max: 40n }),
        fc.array(fc.record({ fromA: fc.boolean(), amount: fc.bigInt({ min: 1n, max: 5n }) }), { maxLength: 6 }),
        fc.double({ min: 0, max: 0.2, noNaN: true }),
        fc.bigInt({ min: 0n, max: 3n }),
        async (seed, x, y, pays, drop, fee) => {
          const { a, b, g, la, lb } = await gatewayNetwork(live, { faults: { drop, duplicate: drop, reorder: drop }, seed, fees: { gateway: fee, devices: fee } });
          const before = gatewayTotal(g, la, lb);
          const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[x, y]] });
          await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id));
          for (const p of pays) await (p.fromA ? a : b).agent.pay(vc.id, p.amount).catch(() => undefined);
          await a.agent.settleVirtual(vc.id);
          expect(await until(() => b.agent.isSettled(vc.id))).toBe(true);
          expect(gatewayTotal(g, la, lb)).toBe(before + 2n * fee);
          const [fa, fb] = a.agent.channel(vc.id).current.state.outcome.balances[0]!;
          expect(balancesOf(a, la)[0]).toBe(100n - x + fa - fee);
          expect(balancesOf(b, lb)[0]).toBe(50n - y + fb - fee);
          for (const p of live.splice(0)) {
            p.agent.stop();
            p.store.close();
          }
        },
      ),
      { numRuns: 12 },
    );
  });
});

describe('ledger terms the gateway refuses', () => {
  it('a proposal whose challenge duration lies outside the contract bounds gets InvalidTerms; the gateway opens nothing and signs only its refusal', async () => {
    const { network, g } = await gatewayNetwork(live);
    const mallory = new RecordingSigner(Signer.random().exportPrivateKey());
    const endpoint = network.endpoint(mallory.address);
    const replies: Message[] = [];
    endpoint.setHandler({ message: (_from, frame) => replies.push(decodeMessage(frame)), connected: () => undefined });
    const channelsBefore = g.agent.channels().length;
    const signedBefore = g.signer.signed.length;
    for (const challengeDuration of [0n, MIN_CHALLENGE_DURATION - 1n, MAX_CHALLENGE_DURATION + 1n, (1n << 64n) - 1n]) {
      // Signed like proposeOpen, past its own check: what a hostile device sends.
      const { message, context } = proposeOpen(mallory, { peer: g.signer.address, ...CHAIN, challengeDuration: MIN_CHALLENGE_DURATION, kind: ChannelKind.Ledger, assets: [ETH], balances: [[0n, 100n]] });
      const digest = openDigest(domainSeparator(CHAIN), { share: toHex(message.share), participants: context.participants, challengeDuration, kind: message.kind, outcome: { assets: message.assets, balances: message.balances, locked: [] } });
      await endpoint.send(g.signer.address, encodeMessage({ ...message, challengeDuration, sig: mallory.sign(digest) }));
    }
    expect(await until(() => replies.length === 4)).toBe(true);
    expect(replies.every((m) => m.type === MessageType.OpenReject && m.reason === RejectReason.InvalidTerms)).toBe(true);
    expect(g.agent.channels()).toHaveLength(channelsBefore);
    // Its only signatures are on the refusals.
    expect(g.signer.signed).toHaveLength(signedBefore + replies.length);
    expect(replies.every((m) => m.type === MessageType.OpenReject && openRejectedBy(m, g.signer.address))).toBe(true);
  });
});

describe('idle virtual channels', () => {
  const idle = { virtualLimits: { idleMs: 100 } };

  it("a payer that vanishes mid-stream: its payee claims the highest voucher, secured first, and is paid off-chain; the gateway keeps the voucher for the payer's parent", async () => {
    const secured: bigint[] = [];
    const { a, b, g, la, lb, network, intermediary } = await gatewayNetwork(live, { payee: idle, secureClaim: async (_vc, v) => void secured.push(v.cumulative) });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    const received: bigint[] = [];
    b.agent.on('voucher', (e) => received.push(e.cumulative));
    for (let i = 0; i < 6; i++) a.agent.payStream(vc.id, 2n);
    expect(await until(() => received.at(-1) === 12n)).toBe(true);
    network.disconnect(a.signer.address);
    // After two idle periods without an answer to its close requests, B claims.
    expect(await until(() => balancesOf(b, lb)[0] === 62n, 5000)).toBe(true);
    expect(secured).toContain(12n);
    expect(b.agent.channel(lb).current.state.outcome.locked).toEqual([]);
    expect(balancesOf(b, lb)).toEqual([62n, 88n]);
    expect(b.agent.channels().some((c) => c.id === vc.id)).toBe(false);
    // The payer's parent still locks the stream, and G holds the voucher to settle it on-chain.
    expect(g.agent.channel(la).current.state.outcome.locked.map((l) => l.id)).toEqual([vc.id]);
    expect(intermediary.virtualChannel(vc.id)?.voucher?.cumulative).toBe(12n);
  });

  it('a claim the gateway cannot secure is refused: nothing moves, and it is asked again', async () => {
    let attempts = 0;
    const { a, b, g, lb, network } = await gatewayNetwork(live, { payee: idle, secureClaim: async () => { attempts++; throw new InvalidAllocationError('resolved lower on-chain'); } });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    a.agent.payStream(vc.id, 5n);
    expect(await until(() => b.agent.channel(vc.id).voucher?.cumulative === 5n)).toBe(true);
    network.disconnect(a.signer.address);
    expect(await until(() => attempts >= 2, 5000)).toBe(true);
    expect(balancesOf(b, lb)).toEqual([50n, 70n]);
    expect(b.agent.channel(lb).current.state.outcome.locked.map((l) => l.id)).toEqual([vc.id]);
  });

  it('an idle stream is settled by its payee at the highest voucher: each device gets its due, the gateway what it locked', async () => {
    const { a, b, g, la, lb } = await gatewayNetwork(live, { devices: idle });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    a.agent.payStream(vc.id, 12n);
    // Nobody calls settleVirtual: the payee asks once the channel has been idle.
    await until(() => a.agent.isSettled(vc.id) && b.agent.isSettled(vc.id));
    expect(balancesOf(a, la)).toEqual([88n, 112n]);
    expect(balancesOf(b, lb)).toEqual([62n, 88n]);
    expect(gatewayTotal(g, la, lb)).toBe(200n);
  });

  it('an idle virtual channel is finalized at its latest balances and settled into both parents', async () => {
    const { a, b, g, la, lb } = await gatewayNetwork(live, { devices: idle });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    await a.agent.pay(vc.id, 7n);
    await until(() => a.agent.isSettled(vc.id) && b.agent.isSettled(vc.id));
    expect(balancesOf(a, la)).toEqual([93n, 107n]);
    expect(balancesOf(b, lb)).toEqual([57n, 93n]);
    expect(gatewayTotal(g, la, lb)).toBe(200n);
  });

  it('a payer that goes quiet with its slots full blocks only itself, and its channels settle once it answers again', async () => {
    // Idle time long enough for the four opens to finish before any of them is asked to close.
    const { a, b, g, network } = await gatewayNetwork(live, { devices: { virtualLimits: { idleMs: 1000 } } });
    const opts = { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[1n, 0n]] as [[bigint, bigint]] };
    const held: ChannelRecord[] = [];
    for (let i = 0; i < 4; i++) held.push(await a.agent.openVirtual(b.signer.address, opts));
    const asked: number[] = [];
    countCloseRequests(b, a, asked);
    network.disconnect(a.signer.address);
    const c = makeParty(network, tempDir(), 'c');
    live.push(c);
    await c.agent.open(g.signer.address, { balances: [[10n, 10n]] });
    await until(() => g.agent.channels().filter((ch) => ch.phase === 'open').length === 3);
    expect((await c.agent.openVirtual(b.signer.address, opts)).phase).toBe('open');
    // B keeps asking the silent payer to close.
    await until(() => asked.length >= 8, 10_000);
    network.reconnect(a.signer.address);
    await until(() => held.every((vc) => b.agent.isSettled(vc.id)));
    expect(b.agent.channelsWith(a.signer.address).filter((ch) => ch.params.kind === ChannelKind.Stream)).toEqual([]);
  });
});

/** Counts the close requests `from` sends to `to`. */
function countCloseRequests(from: Party, to: Party, asked: number[]): void {
  const send = from.transport.send.bind(from.transport);
  from.transport.send = (peer, frame) => {
    if (peer === to.signer.address && decodeMessage(frame).type === MessageType.CloseRequest) asked.push(asked.length);
    return send(peer, frame);
  };
}

describe('virtual-channel terms the gateway refuses', () => {
  it('a stream whose payee starts above zero is refused at the open, nothing locked', async () => {
    const { a, b, g, la } = await gatewayNetwork(live);
    await expect(a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 5n]] })).rejects.toThrow();
    expect(balancesOf(a, la)).toEqual([100n, 100n]);
  });

  it(`a ledger channel funds at most ${MAX_LOCKED} virtual channels: the next open is refused up front, by either device`, async () => {
    const { a, b, g, la, network } = await gatewayNetwork(live, { devices: { virtualLimits: { perPeer: MAX_LOCKED } } });
    const opts = { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[1n, 0n]] as [[bigint, bigint]] };
    for (let i = 0; i < MAX_LOCKED - 1; i++) await a.agent.openVirtual(b.signer.address, opts);
    // Two opens at once for the last place: one gets it, the other is refused before anything is sent.
    const last = await Promise.allSettled([a.agent.openVirtual(b.signer.address, opts), a.agent.openVirtual(b.signer.address, opts)]);
    expect(last.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect((last.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(InvalidAllocationError);
    expect(a.agent.channel(la).current.state.outcome.locked).toHaveLength(MAX_LOCKED);
    await expect(a.agent.openVirtual(b.signer.address, opts)).rejects.toBeInstanceOf(InvalidAllocationError);
    // B's side is full too: C, with room, is refused by B.
    const c = makeParty(network, tempDir(), 'c');
    live.push(c);
    await c.agent.open(g.signer.address, { balances: [[10n, 10n]] });
    await until(() => g.agent.channels().filter((ch) => ch.phase === 'open').length === 3);
    await expect(c.agent.openVirtual(b.signer.address, opts)).rejects.toBeInstanceOf(OpenRejectedError);
    expect(b.agent.channels().filter((ch) => ch.params.kind === ChannelKind.Stream)).toHaveLength(MAX_LOCKED);
  });

  it('one payer cannot fill a payee: past its per-peer limit it is refused, and another payer still opens', async () => {
    const { a, b, g, network } = await gatewayNetwork(live);
    const opts = { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[1n, 0n]] as [[bigint, bigint]] };
    for (let i = 0; i < 4; i++) await a.agent.openVirtual(b.signer.address, opts);
    await expect(a.agent.openVirtual(b.signer.address, opts)).rejects.toBeInstanceOf(OpenRejectedError);
    const c = makeParty(network, tempDir(), 'c');
    live.push(c);
    await c.agent.open(g.signer.address, { balances: [[10n, 10n]] });
    await until(() => g.agent.channels().filter((ch) => ch.phase === 'open').length === 3);
    expect((await c.agent.openVirtual(b.signer.address, opts)).phase).toBe('open');
  });

  it('a lock below the payee\'s minimum is refused', async () => {
    const { a, b, g } = await gatewayNetwork(live, { devices: { virtualLimits: { minLock: 5n } } });
    await expect(a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[4n, 0n]] })).rejects.toBeInstanceOf(OpenRejectedError);
    expect((await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[5n, 0n]] })).phase).toBe('open');
  });

  it('a lock larger than the ledger balance is refused by the device itself', async () => {
    const { a, b, g, la } = await gatewayNetwork(live);
    await expect(a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[150n, 0n]] })).rejects.toThrow();
    expect(balancesOf(a, la)).toEqual([100n, 100n]);
  });
});

describe('a colluding pair against the gateway', () => {
  /**
   * The Intermediary alone, fed the held funding requests two devices send: each proposes
   * on its ledger channel with G the lock its own terms describe. Returns G's answers.
   */
  function fundingRequests(termsA: [[bigint, bigint]], termsB: [[bigint, bigint]]) {
    const [A, B, G] = [Signer.random(), Signer.random(), Signer.random()];
    const ledger = (device: Signer): ChannelRecord => {
      const params = { ...CHAIN, participants: [device.address, G.address] as const, challengeDuration: MIN_CHALLENGE_DURATION, nonce: 1n, kind: ChannelKind.Ledger };
      const id = channelId(params);
      const state = { channelId: id, version: 3n, outcome: { assets: [ETH], balances: [[500n, 500n]] as const, locked: [] }, isFinal: false };
      return { id, params, idx: 1, peer: device.address, peerKey: device.publicKey, phase: 'open', current: { state, sigs: [null, null] }, staged: null, highestSigned: 3n, shares: { a: new Uint8Array(32), b: new Uint8Array(32) } };
    };
    const [la, lb] = [ledger(A), ledger(B)];
    const answers = new Map<Bytes32, boolean>();
    const listeners: ((ctx: UpdateContext) => void)[] = [];
    const agent = {
      on: (_event: 'held', fn: (ctx: UpdateContext) => void) => listeners.push(fn),
      channelsWith: (peer: Address) => [la, lb].filter((c) => c.peer === peer),
      answerHeld: (id: Bytes32, _version: bigint, accept: boolean) => answers.set(id, accept),
    };
    const dir = tempDir();
    const intermediary = new Intermediary({ records: new ChannelStore(join(dir, 'g.db'), { durability: 'normal' }).service, chain: CHAIN, holdTimeoutMs: 60_000, logger: silentLogger });
    intermediary.attach(agent as unknown as Agent);
    const vc = { ...CHAIN, participants: [A.address, B.address] as const, challengeDuration: MIN_CHALLENGE_DURATION, nonce: 7n, kind: ChannelKind.Stream };
    const vcId = channelId(vc);
    const request = (parent: ChannelRecord, index: 0 | 1, peer: Address, balances: [[bigint, bigint]]): UpdateContext => {
      const locked = lockOutcome(parent.current.state.outcome, parent.params.participants, { id: vcId, participants: vc.participants, balances });
      const proposed = { channelId: parent.id, version: 4n, outcome: locked, isFinal: false };
      const fund = { peer, index, challengeDuration: vc.challengeDuration, nonce: vc.nonce, kind: vc.kind, balances, sig: null };
      return { channel: parent, current: parent.current.state, proposed, attachment: { fund } };
    };
    return {
      async send(): Promise<void> {
        for (const fn of listeners) fn(request(la, 0, B.address, termsA));
        for (const fn of listeners) fn(request(lb, 1, A.address, termsB));
        await until(() => answers.size === 2);
      },
      answers: () => [answers.get(la.id), answers.get(lb.id)],
      funded: () => intermediary.virtualChannels(),
    };
  }

  it('requests that describe different initial states are both refused: nothing locked in either parent', async () => {
    // A's request locks 100 of A's in A–G; B's describes 50, so G would lock 50 in G–B: the parents would not mirror each other.
    const g = fundingRequests([[100n, 0n]], [[50n, 0n]]);
    await g.send();
    expect(g.answers()).toEqual([false, false]);
    expect(g.funded()).toEqual([]);
  });

  it('requests that describe the same initial state are both signed', async () => {
    const g = fundingRequests([[100n, 0n]], [[100n, 0n]]);
    await g.send();
    expect(g.answers()).toEqual([true, true]);
    expect(g.funded()).toHaveLength(1);
  });
});

describe('an outsider who can publish under any name', () => {
  /** Runs `forge(m)` when `p` sends a message of type `type`, before it leaves. */
  function onSend(p: Party, type: MessageType, forge: (m: Message) => void): void {
    const send = p.transport.send.bind(p.transport);
    p.transport.send = async (to, frame) => {
      const m = decodeMessage(frame);
      if (m.type === type) forge(m);
      return send(to, frame);
    };
  }
  const outsider = Signer.random();

  it("a forged close request, with the channel's alias and the payee's name, does not make the payer settle", async () => {
    const { network, a, b, g } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await until(() => b.agent.channels().some((c) => c.id === vc.id) && b.agent.isFunded(vc.id));
    a.agent.payStream(vc.id, 2n);
    const forged = closeRequest(a.agent.channel(vc.id), outsider);
    network.forge(b.signer.address, a.signer.address, encodeMessage(forged));
    // Signed by the payer itself, as a replay of something it sent would be: refused too.
    network.forge(b.signer.address, a.signer.address, encodeMessage(closeRequest(a.agent.channel(vc.id), a.signer)));
    await network.idle();
    expect(a.agent.channel(vc.id).phase).toBe('open');
    a.agent.payStream(vc.id, 2n);
    expect(await until(() => b.agent.channel(vc.id).voucher?.cumulative === 4n)).toBe(true);
    // The payee's own request still settles it.
    await b.agent.settleVirtual(vc.id);
    expect(await until(() => a.agent.isSettled(vc.id))).toBe(true);
  });

  it("a forged refusal posing as the gateway does not make a payer give up the funding the gateway accepts", async () => {
    const { network, a, b, g, la } = await gatewayNetwork(live);
    onSend(a, MessageType.FundRequest, (m) => {
      const rec = a.agent.channel(la);
      const version = (m as { version: bigint }).version;
      network.forge(g.signer.address, a.signer.address, encodeMessage(updateReject(rec, outsider, version, RejectReason.Policy)));
    });
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    expect(await until(() => a.agent.isFunded(vc.id) && b.agent.isFunded(vc.id))).toBe(true);
    expect(balancesOf(a, la)).toEqual([70n, 100n]);
  });

  it('a forged refusal of an open proposal does not make the proposer give up', async () => {
    const { network, a, g } = await gatewayNetwork(live);
    onSend(a, MessageType.OpenPropose, (m) => {
      const share = (m as { share: Uint8Array }).share;
      network.forge(g.signer.address, a.signer.address, encodeMessage(openReject(outsider, share, RejectReason.Policy)));
    });
    const ch = await a.agent.open(g.signer.address, { balances: [[10n, 0n]] });
    expect(ch.phase).toBe('open');
  });
});
