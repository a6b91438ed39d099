import fc from 'fast-check';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Intermediary } from '../../src/client/intermediary.ts';
import { Agent } from '../../src/client/agent.ts';
import type { AgentOptions } from '../../src/client/types.ts';
import { aliasOf, type ChannelRecord, digestOf, proposalMessage, stateFromBody } from '../../src/channel/record.ts';
import { closeRequest, updateReject } from '../../src/channel/control.ts';
import { initialVirtualState, lockOutcome, unlockOutcome } from '../../src/channel/virtual.ts';
import { MAX_VERSION_GAP } from '../../src/channel/update.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { silentLogger } from '../../src/log.ts';
import { channelId } from '../../src/model/channelId.ts';
import { MIN_CHALLENGE_DURATION } from '../../src/model/duration.ts';
import { domainSeparator, stateDigest, voucherDigest } from '../../src/model/hash.ts';
import { type Bytes32, ChannelKind, NATIVE_ASSET, type Params, type State } from '../../src/model/types.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { decodeMessage, encodeMessage } from '../../src/wire/codec.ts';
import { type Balances, type Message, MessageType, RejectReason } from '../../src/wire/messages.ts';
import { CHAIN, makeParty, type Party, tempDir, until } from '../../src/testing/agents.ts';
import { PowerLossStore } from '../../src/testing/powerLossStore.ts';
import { proposeWithEvidence } from '../../src/testing/mallory.ts';

// Gateway neutrality against a colluding pair. A and B are one attacker: they sign any
// virtual-channel state together, describe the virtual channel differently to the
// gateway on each side, settle it in the two parents with different final states, replay
// every request they sent, and an outsider forges control messages. The gateway G loses
// power at a drawn moment. Whatever happens, G's ledger channels with A and B must lock
// the same virtual channels for the same amounts, and G must hold exactly what it put in
// plus its fees: its balances plus what the locks return to it, which for a mirrored lock
// is the lock's whole amount whatever final state resolves it.

const HOLD_MS = 400;
const TIMING = { retransmitMs: 10, maxRetransmitMs: 80, requestTimeoutMs: 1500 };
const FUNDS = 100n;

interface Gateway {
  agent: Agent;
  store: PowerLossStore;
  /** Virtual channels this gateway signed a lock of, across restarts. */
  funded: Set<Bytes32>;
}

const running: (() => void)[] = [];
afterEach(() => {
  for (const stop of running.splice(0)) stop();
});

function bootGateway(network: MemoryNetwork, signer: Signer, path: string, fee: bigint, funded: Set<Bytes32>): Gateway {
  const store = new PowerLossStore(path);
  const intermediary = new Intermediary({ records: store.service, chain: CHAIN, holdTimeoutMs: HOLD_MS, fee, logger: silentLogger });
  const agent = new Agent({ signer, transport: network.endpoint(signer.address), store, chain: CHAIN, timing: TIMING, policy: { acceptUpdate: intermediary.decide } });
  intermediary.attach(agent);
  agent.on('updated', (e) => {
    for (const l of e.state.state.outcome.locked) funded.add(l.id);
  });
  agent.start();
  running.push(() => {
    agent.stop();
    store.close();
  });
  return { agent, store, funded };
}

/** The device's side of a funding request, built by hand: the balances it claims are its own choice. */
function fund(device: Party, parent: Bytes32, vc: Params, claimed: Balances, fee: bigint): Promise<unknown> {
  const rec = device.agent.channel(parent);
  const index = vc.participants[0] === device.signer.address ? 0 : 1;
  const v0 = initialVirtualState(vc, rec.current.state.outcome.assets, claimed);
  const sig = device.signer.sign(stateDigest(domainSeparator(vc), v0));
  const terms = { peer: vc.participants[1 - index]!, index: index as 0 | 1, challengeDuration: vc.challengeDuration, nonce: vc.nonce, kind: vc.kind, balances: claimed, sig };
  return proposeWithEvidence(device.agent, parent, (s) => {
      const locked = lockOutcome(s.outcome, rec.params.participants, { id: v0.channelId, participants: vc.participants, balances: claimed });
      const gw = rec.idx === 0 ? 1 : 0;
      const balances = locked.balances.map((pair, a) => (a === 0 ? (gw === 1 ? [pair[0] - fee, pair[1] + fee] : [pair[0] + fee, pair[1] - fee]) : pair)) as Balances;
      return { balances, locked: locked.locked, isFinal: false };
    }, { fund: terms }).catch(() => undefined);
}

/** The device's side of a settlement, with a final state both colluders signed. */
function settle(device: Party, parent: Bytes32, vc: Params, signers: readonly [Signer, Signer], version: bigint, balances: Balances): Promise<unknown> {
  const id = channelId(vc);
  const state: State = { channelId: id, version, outcome: { assets: [NATIVE_ASSET], balances, locked: [] }, isFinal: true };
  const digest = stateDigest(domainSeparator(vc), state);
  const sigs = [signers[0].sign(digest), signers[1].sign(digest)] as const;
  return proposeWithEvidence(device.agent, parent, (s) => {
      const outcome = unlockOutcome(s.outcome, id, balances);
      return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
    }, { settle: { id: Buffer.from(id.slice(2), 'hex'), version, balances, sigs } }).catch(() => undefined);
}

/** What G holds across both parents, or a reason it cannot be neutral. */
function gatewayValue(la: ChannelRecord, lb: ChannelRecord): bigint {
  const locksA = new Map(la.current.state.outcome.locked.map((l) => [l.id, l.balances[0]!]));
  const locksB = new Map(lb.current.state.outcome.locked.map((l) => [l.id, l.balances[0]!]));
  expect([...locksA.keys()].sort(), 'both parents lock the same virtual channels').toEqual([...locksB.keys()].sort());
  let value = la.current.state.outcome.balances[0]![la.idx] + lb.current.state.outcome.balances[0]![lb.idx];
  for (const [id, total] of locksA) {
    expect(locksB.get(id), `virtual channel ${id} locks the same amount in both parents`).toBe(total);
    value += total;
  }
  return value;
}

/** No proposal of either side of a ledger channel is still out. */
const quiet = (device: Party, gateway: Gateway, id: Bytes32): boolean => !device.agent.channel(id).staged && !gateway.agent.channel(id).staged;

/** Half the time null (the colluders agree), else a value of their own. */
const orSame = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.oneof(fc.constant(null), arb);

const pair = fc.record({ version: fc.bigInt({ min: 1n, max: 4n }), payer: fc.bigInt({ min: 0n, max: 1000n }) });

describe('gateway neutrality against a colluding pair', () => {

  it('whatever they claim, sign, replay or forge, and however the gateway crashes, G holds what it locked plus its fees', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.record({ x: fc.bigInt({ min: 0n, max: 40n }), y: fc.bigInt({ min: 0n, max: 40n }) }),
        // B's claim: A's (null), or one of its own.
        orSame(fc.record({ x: fc.bigInt({ min: 0n, max: 40n }), y: fc.bigInt({ min: 0n, max: 40n }) })),
        // Settlement rounds: A's final and B's (null: the same as A's).
        fc.array(fc.record({ a: pair, b: orSame(pair) }), { minLength: 1, maxLength: 3 }),
        fc.bigInt({ min: 0n, max: 2n }),
        fc.option(fc.integer({ min: 0, max: 3 }), { nil: null }),
        fc.boolean(),
        async (seed, claimA, claimB, rounds, fee, crashAt, forge) => {
          try {
            await attack({ seed, claimA, claimB, rounds, fee, crashAt, forge });
          } finally {
            for (const stop of running.splice(0)) stop();
          }
        },
      ),
      { numRuns: Number(process.env.PICOPAY_NEUTRALITY_RUNS ?? 15) },
    );
  }, 240_000);
});

interface Attack {
  seed: number;
  claimA: { x: bigint; y: bigint };
  claimB: { x: bigint; y: bigint } | null;
  rounds: { a: { version: bigint; payer: bigint }; b: { version: bigint; payer: bigint } | null }[];
  fee: bigint;
  crashAt: number | null;
  forge: boolean;
}

/** G and two devices, each with a ledger channel with G; `powerLoss()` cuts G's power and boots it again. */
async function network3(seed: number, fee: bigint, devices: Partial<AgentOptions> = {}) {
  const network = new MemoryNetwork({ seed });
  const dir = tempDir('picopay-neutral-');
  const gs = Signer.random();
  const funded = new Set<Bytes32>();
  const gPath = join(dir, 'g.db');
  const net = { network, gs, funded, g: bootGateway(network, gs, gPath, fee, funded) };
  const [a, b] = [makeParty(network, dir, 'a', { timing: TIMING, ...devices }), makeParty(network, dir, 'b', { timing: TIMING, ...devices })];
  running.push(() => [a, b].forEach((p) => (p.agent.stop(), p.store.close())));
  const la = (await a.agent.open(gs.address, { balances: [[FUNDS, FUNDS]] })).id;
  const lb = (await b.agent.open(gs.address, { balances: [[FUNDS, FUNDS]] })).id;
  await until(() => net.g.agent.channels().filter((c) => c.phase === 'open').length === 2);
  const powerLoss = (): void => {
    net.g.agent.stop();
    network.detach(gs.address);
    net.g.store.powerLoss();
    net.g = bootGateway(network, gs, gPath, fee, funded);
  };
  const start = gatewayValue(net.g.agent.channel(la), net.g.agent.channel(lb));
  return { network, gs, funded, get g() { return net.g; }, a, b, la, lb, start, powerLoss };
}

async function attack({ seed, claimA, claimB, rounds, fee, crashAt, forge }: Attack): Promise<void> {
  const net = await network3(seed, fee);
  const { network, gs, funded, a, b, la, lb, start } = net;

  // Every request the pair sends G, for the replays.
  const sent: { from: Party; frame: Uint8Array }[] = [];
  for (const p of [a, b]) {
    const send = p.transport.send.bind(p.transport);
    p.transport.send = (to, frame) => {
      const t = decodeMessage(frame).type;
      if (to === gs.address && (t === MessageType.FundRequest || t === MessageType.SettleRequest || t === MessageType.Update)) sent.push({ from: p, frame });
      return send(to, frame);
    };
  }
  const crash = (step: number): void => {
    if (crashAt === step) net.powerLoss();
  };
  const mallory = Signer.random();
  const forgeAll = (): void => {
    if (!forge) return;
    for (const [from, to, rec] of [[a, gs, net.g.agent.channel(la)], [b, gs, net.g.agent.channel(lb)]] as const) {
      const version = rec.current.state.version + 1n;
      network.forge(from.signer.address, to.address, encodeMessage(updateReject(rec, mallory, version, RejectReason.Policy)));
      network.forge(from.signer.address, to.address, encodeMessage(closeRequest(rec, mallory)));
      network.forge(gs.address, from.signer.address, encodeMessage({ type: MessageType.UpdateReject, alias: aliasOf(rec.id), version, reason: RejectReason.Policy, sig: mallory.sign(new Uint8Array(32)) }));
    }
  };

  const vc: Params = { ...CHAIN, participants: [a.signer.address, b.signer.address], challengeDuration: MIN_CHALLENGE_DURATION, nonce: BigInt(seed), kind: ChannelKind.Virtual };
  const claimed = (c: { x: bigint; y: bigint }): Balances => [[c.x, c.y]];
  crash(0);
  forgeAll();
  await Promise.all([fund(a, la, vc, claimed(claimA), fee), fund(b, lb, vc, claimed(claimB ?? claimA), fee)]);
  crash(1);
  const total = claimA.x + claimA.y;
  for (const [i, r] of rounds.entries()) {
    const split = (p: { version: bigint; payer: bigint }): Balances => {
      const x = total === 0n ? 0n : p.payer % (total + 1n);
      return [[x, total - x]];
    };
    const finalB = r.b ?? r.a;
    forgeAll();
    await Promise.all([
      settle(a, la, vc, [a.signer, b.signer], r.a.version, split(r.a)),
      settle(b, lb, vc, [a.signer, b.signer], finalB.version, split(finalB)),
    ]);
    crash(2 + i);
  }
  // Replays of everything they sent, and copies an outsider signed in their place.
  for (const { from, frame } of sent) {
    network.forge(from.signer.address, gs.address, frame);
    const m = decodeMessage(frame) as { sig: Uint8Array };
    if (forge) network.forge(from.signer.address, gs.address, encodeMessage({ ...decodeMessage(frame), sig: mallory.sign(m.sig.subarray(0, 32)) } as Message));
  }
  await until(() => quiet(a, net.g, la) && quiet(b, net.g, lb), 10_000);
  await network.idle();

  const ga = net.g.agent.channel(la);
  const gb = net.g.agent.channel(lb);
  expect(gatewayValue(ga, gb)).toBe(start + 2n * fee * BigInt(funded.size));
  // G funded only what both described alike.
  if (claimB && (claimB.x !== claimA.x || claimB.y !== claimA.y)) expect(funded.size).toBe(0);
  // Devices and gateway hold the same ledger states.
  expect(a.agent.channel(la).current.state).toEqual(ga.current.state);
  expect(b.agent.channel(lb).current.state).toEqual(gb.current.state);
}

// An honest payer A streams to a payee B that misbehaves: it replays what it received,
// forges vouchers and far-ahead proposals, asks to close at sums never paid, asks G to
// settle with a final state A never signed, or vanishes; G may lose power. A must end
// with exactly what it did not pay (in its ledger channel, or in the lock when B is gone),
// and G with what it locked plus its fees.

type Misdeed = 'replay' | 'farAhead' | 'closeHigh' | 'fakeVoucher' | 'settleAlone' | 'vanish' | 'gatewayPowerLoss';
const MISDEEDS: Misdeed[] = ['replay', 'farAhead', 'closeHigh', 'fakeVoucher', 'settleAlone', 'vanish', 'gatewayPowerLoss'];

describe('an honest payer against a misbehaving payee', () => {
  it('whatever the payee does, the payer keeps what it did not pay and the gateway what it locked plus its fees', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.array(fc.bigInt({ min: 1n, max: 5n }), { maxLength: 6 }),
        fc.array(fc.constantFrom(...MISDEEDS), { maxLength: 4 }),
        fc.bigInt({ min: 0n, max: 2n }),
        async (seed, payments, misdeeds, fee) => {
          try {
            await payeeAttack(seed, payments, misdeeds, fee);
          } finally {
            for (const stop of running.splice(0)) stop();
          }
        },
      ),
      { numRuns: Number(process.env.PICOPAY_NEUTRALITY_RUNS ?? 15) },
    );
  }, 240_000);
});

async function payeeAttack(seed: number, payments: bigint[], misdeeds: Misdeed[], fee: bigint): Promise<void> {
  const net = await network3(seed, fee, { virtualFee: fee });
  const { network, gs, a, b, la, lb, start } = net;
  // What B received, for its replays.
  const received: Uint8Array[] = [];
  const receive = b.transport.receive.bind(b.transport);
  b.transport.receive = (from, frame) => {
    received.push(frame.slice());
    receive(from, frame);
  };
  const vc = await a.agent.openVirtual(b.signer.address, { gateway: gs.address, kind: ChannelKind.Stream, balances: [[50n, 0n]] });
  await until(() => b.agent.isFunded(vc.id));
  let paid = 0n;
  for (const p of payments) paid = a.agent.payStream(vc.id, p);
  await network.idle();

  const rec = b.agent.channel(vc.id);
  let gone = false;
  for (const m of misdeeds) {
    if (gone) break;
    if (m === 'replay') {
      for (const frame of received) network.forge(b.signer.address, a.signer.address, frame);
    } else if (m === 'farAhead') {
      const state = stateFromBody(rec, { version: MAX_VERSION_GAP * 2n, balances: [[0n, 50n]], locked: [], isFinal: true });
      network.forge(b.signer.address, a.signer.address, encodeMessage(proposalMessage(rec, { state, sig: b.signer.sign(digestOf(rec, state)) })));
    } else if (m === 'closeHigh') {
      const asked = closeRequest({ ...rec, voucher: { cumulative: 49n, sig: new Uint8Array(65) } }, b.signer);
      network.forge(b.signer.address, a.signer.address, encodeMessage(asked));
    } else if (m === 'fakeVoucher') {
      const sig = b.signer.sign(voucherDigest(domainSeparator(rec.params), vc.id, 50n));
      network.forge(b.signer.address, a.signer.address, encodeMessage({ type: MessageType.Voucher, alias: aliasOf(vc.id), cumulative: 50n, sig }));
    } else if (m === 'settleAlone') {
      // A final state paying B everything, with B's signature twice: G must see it is not A's.
      const final: State = { channelId: vc.id, version: 1n, outcome: { assets: [NATIVE_ASSET], balances: [[0n, 50n]], locked: [] }, isFinal: true };
      const sig = b.signer.sign(stateDigest(domainSeparator(rec.params), final));
      await proposeWithEvidence(b.agent, lb, (s) => {
          const o = unlockOutcome(s.outcome, vc.id, [[0n, 50n]]);
          return { balances: o.balances, locked: o.locked, isFinal: false };
        }, { settle: { id: Buffer.from(vc.id.slice(2), 'hex'), version: 1n, balances: [[0n, 50n]], sigs: [sig, sig] } }).catch(() => undefined);
    } else if (m === 'vanish') {
      network.disconnect(b.signer.address);
      gone = true;
    } else {
      net.powerLoss();
    }
  }
  await network.idle();
  // A closes at what it paid; with B gone the lock stays, for the watcher to resolve by the voucher.
  if (!gone) {
    await a.agent.settleVirtual(vc.id);
    await until(() => b.agent.isSettled(vc.id));
  }
  await until(() => quiet(b, net.g, lb) || gone, 10_000);
  await until(() => !a.agent.channel(la).staged || gone, 10_000);

  const ga = net.g.agent.channel(la);
  expect(gatewayValue(ga, net.g.agent.channel(lb))).toBe(start + 2n * fee);
  const parent = a.agent.channel(la).current.state.outcome;
  const lock = parent.locked.find((l) => l.id === vc.id);
  // What A holds: its balance, and, while the lock stands, what it keeps of the lock by its voucher.
  const held = parent.balances[0]![0] + (lock ? lock.balances[0]! - paid : 0n);
  expect(held).toBe(FUNDS - paid - fee);
  if (!gone) expect(a.agent.channel(la).current.state).toEqual(ga.current.state);
}
