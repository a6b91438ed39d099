import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/client/agent.ts';
import { digestOf, proposalMessage, stateFromBody } from '../../src/channel/record.ts';
import { MAX_VERSION_GAP, propose } from '../../src/channel/update.ts';
import { ChannelClosedError, InvalidAllocationError } from '../../src/errors.ts';
import { ChannelKind } from '../../src/model/types.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { decodeMessage, encodeMessage } from '../../src/wire/codec.ts';
import { MessageType } from '../../src/wire/messages.ts';
import { CHAIN, FAST, intercept, makeParty, type Party, stoppedAfterEach, tempDir, until } from '../../src/testing/agents.ts';
import { gatewayNetwork } from '../../src/testing/gateway.ts';

// Mallory's attacks on retirement, idle settlement and refusals (found by an adversarial
// review), each with the defence that now holds. A is a payer, B a payee, G the gateway.

const live = stoppedAfterEach();

/** A stream A pays B through G, paid `paid`, and B's first idle close request, captured before it reached A. */
async function capturedCloseRequest(paid: bigint) {
  const net = await gatewayNetwork(live, { payee: { virtualLimits: { idleMs: 100 } } });
  const { a, b, g } = net;
  const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[50n, 0n]] });
  await until(() => b.agent.isFunded(vc.id));
  a.agent.payStream(vc.id, paid);
  // B's close requests never reach A; an outsider keeps them.
  const captured: Uint8Array[] = [];
  intercept(b, MessageType.CloseRequest, captured);
  await until(() => captured.length > 0);
  return { ...net, vc, request: captured[0]! };
}

describe('mallory against streams', () => {
  it('a close request captured on the broker and replayed after the stream went on is spent', async () => {
    const { network, a, b, vc, request } = await capturedCloseRequest(1n);
    // The stream goes on; then the outsider replays the old request under B's name.
    a.agent.payStream(vc.id, 4n);
    await until(() => b.agent.channel(vc.id).voucher?.cumulative === 5n);
    network.forge(b.signer.address, a.signer.address, request);
    await network.idle();
    expect(a.agent.channel(vc.id).phase).toBe('open');
    expect(a.agent.payStream(vc.id, 1n)).toBe(6n);
  });

  it('a flood of one valid close request closes the stream once', async () => {
    const { network, a, b, vc, request } = await capturedCloseRequest(3n);
    const proposals: Uint8Array[] = [];
    intercept(a, MessageType.Update, proposals, () => false);
    for (let i = 0; i < 300; i++) network.forge(b.signer.address, a.signer.address, request);
    await until(() => a.agent.isSettled(vc.id) && b.agent.isSettled(vc.id));
    // One final proposal of the stream, whatever the retransmissions of the parents' updates.
    const finals = proposals.map((f) => decodeMessage(f)).filter((m) => m.type === MessageType.Update && m.isFinal);
    expect(finals).toHaveLength(1);
  });

  it('a payee\'s proposal far ahead of the next version is refused without taking the stream\'s versions', async () => {
    const { network, a, b, g } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    a.agent.payStream(vc.id, 10n);
    await until(() => b.agent.channel(vc.id).voucher?.cumulative === 10n);
    const rec = b.agent.channel(vc.id);
    for (const version of [2n ** 64n - 1n, MAX_VERSION_GAP + 1n]) {
      const state = stateFromBody(rec, { version, balances: rec.current.state.outcome.balances, locked: [], isFinal: false });
      network.forge(b.signer.address, a.signer.address, encodeMessage(proposalMessage(rec, { state, sig: b.signer.sign(digestOf(rec, state)) })));
    }
    await network.idle();
    expect(a.agent.channel(vc.id).highestSigned).toBeLessThan(MAX_VERSION_GAP);
    await a.agent.settleVirtual(vc.id);
    await until(() => b.agent.isSettled(vc.id));
  });
});

describe('mallory against locks and retirement', () => {
  it('a gateway that proposes to drop a device\'s lock and keep its funds is refused', async () => {
    const { network, a, b, g, la } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    // G's own agent will not build it (locks change only with evidence): G signs it by hand.
    const rec = g.agent.channel(la);
    const [x, y] = rec.current.state.outcome.balances[0]!;
    const grab = propose(rec, g.signer, { balances: [rec.idx === 1 ? [x, y + 30n] : [x + 30n, y]], locked: [], isFinal: false });
    await expect(g.agent.update(la, () => ({ balances: grab.state.outcome.balances, locked: [], isFinal: false }))).rejects.toBeInstanceOf(InvalidAllocationError);
    network.forge(g.signer.address, a.signer.address, encodeMessage(grab.message));
    await network.idle();
    expect(a.agent.isFunded(vc.id)).toBe(true);
    expect(a.agent.channel(la).current.state.outcome.locked).toHaveLength(1);
    expect(a.agent.channel(la).current.state.version).toBe(rec.current.state.version);
  });

  it('an agent will not itself propose a lock change without the evidence that names it', async () => {
    const { a, b, g, la } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    await expect(a.agent.update(la, (s) => ({ balances: [[s.outcome.balances[0]![0] + 30n, s.outcome.balances[0]![1]]], locked: [], isFinal: false }))).rejects.toBeInstanceOf(InvalidAllocationError);
    expect(a.agent.channel(la).current.state.outcome.locked).toHaveLength(1);
  });

  it('a device that shrinks its lock or swaps its mapping, to take back part of it, is refused by its own agent and by the gateway', async () => {
    const { network, a, b, g, la } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Virtual, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    const rec = a.agent.channel(la);
    const own = (pair: readonly bigint[], extra: bigint): [bigint, bigint] => (rec.idx === 0 ? [pair[0]! + extra, pair[1]!] : [pair[0]!, pair[1]! + extra]);
    const lock = rec.current.state.outcome.locked[0]!;
    const shrunk = { balances: [own(rec.current.state.outcome.balances[0]!, 5n)], locked: [{ ...lock, balances: [lock.balances[0]! - 5n] }], isFinal: false };
    const swapped = { balances: rec.current.state.outcome.balances, locked: [{ ...lock, indexMap: [lock.indexMap[1], lock.indexMap[0]] as const }], isFinal: false };
    for (const body of [shrunk, swapped]) {
      await expect(a.agent.update(la, () => body)).rejects.toBeInstanceOf(InvalidAllocationError);
      // Signed by hand, past A's own agent: G refuses it.
      network.forge(a.signer.address, g.signer.address, encodeMessage(propose(a.agent.channel(la), a.signer, body).message));
      await network.idle();
      expect(g.agent.channel(la).current.state.outcome.locked).toEqual([lock]);
      expect(g.agent.channel(la).current.state.version).toBe(rec.current.state.version);
    }
  });

  it('retire() refuses a final virtual channel whose parent still locks it', async () => {
    const { a, b, g } = await gatewayNetwork(live);
    const vc = await a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, balances: [[30n, 0n]] });
    await until(() => b.agent.isFunded(vc.id));
    // G will not release it: the final state is signed, the lock stays for now.
    g.transport.send = async () => undefined;
    await a.agent.finalize(vc.id);
    expect(a.agent.isFunded(vc.id)).toBe(true);
    expect(() => a.agent.retire(vc.id)).toThrow(ChannelClosedError);
    expect(a.agent.channels().some((c) => c.id === vc.id)).toBe(true);
  });

  it('an open the acceptor let expire comes back when the proposer shows it completed', async () => {
    const network = new MemoryNetwork({ seed: 2 });
    const dir = tempDir();
    const timing = { ...FAST, requestTimeoutMs: 150 };
    const a = makeParty(network, dir, 'a', { timing });
    const b = makeParty(network, dir, 'b', { timing });
    live.push(a, b);
    // A's countersignature on version 0 is lost until B has let the open expire.
    let lost = true;
    intercept(a, MessageType.UpdateAccept, [], () => lost);
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 0n]] });
    await until(() => b.agent.channels().length === 0);
    lost = false;
    a.agent.resync();
    await until(() => b.agent.channels().some((c) => c.id === ch.id && c.phase === 'open'));
    await a.agent.pay(ch.id, 1n);
    expect(b.agent.channel(ch.id).current.state.outcome.balances).toEqual([[99n, 1n]]);
  });

  it('virtual channels whose funding never came are retired on both sides, and a restart does not fund them', async () => {
    const timing = { ...FAST, requestTimeoutMs: 300 };
    const opts = { timing, virtualLimits: { idleMs: 100 } };
    const { a, b, g, la, lb } = await gatewayNetwork(live, { holdTimeoutMs: 200, devices: opts });
    // A completes the opens but its funding requests never leave.
    intercept(a, MessageType.FundRequest, []);
    for (let i = 0; i < 4; i++) {
      await expect(a.agent.openVirtual(b.signer.address, { gateway: g.signer.address, kind: ChannelKind.Stream, balances: [[1n, 0n]] })).rejects.toThrow();
    }
    const streams = (p: Party): number => p.agent.channels().filter((c) => c.params.kind === ChannelKind.Stream).length;
    await until(() => streams(a) === 0 && streams(b) === 0, 10_000);
    expect(b.store.loadChannels().map((c) => c.id)).toEqual([lb]);
    // After a restart, nothing comes back to be funded.
    for (const p of [a, b]) p.agent.stop();
    const again = [a, b].map((p) => new Agent({ signer: p.signer, transport: p.transport, store: p.store, chain: CHAIN, ...opts }));
    for (const agent of again) agent.start();
    try {
      expect(again.map((agent) => agent.channels().length)).toEqual([1, 1]);
      expect(again[0]!.channel(la).current.state.outcome.locked).toEqual([]);
    } finally {
      for (const agent of again) agent.stop();
    }
  });
});
