import { describe, expect, it } from 'vitest';
import { decodeMessage } from '../wire/codec.ts';
import { MessageType } from '../wire/messages.ts';
import { agentPair, FAST, type Party, stoppedAfterEach, until } from '../testing/agents.ts';

const parties = stoppedAfterEach();

/** Every frame `p` sends is kept back while `held()` says so; `frames` lists them, oldest first. */
function gate(p: Party, held: () => boolean): { frames: Uint8Array[]; take: (type: MessageType, version: bigint) => Uint8Array } {
  const frames: Uint8Array[] = [];
  const send = p.transport.send.bind(p.transport);
  p.transport.send = async (to, frame) => {
    if (!held()) return send(to, frame);
    frames.push(frame.slice());
  };
  const take = (type: MessageType, version: bigint): Uint8Array => {
    const i = frames.findIndex((f) => {
      const m = decodeMessage(f) as { type: MessageType; version?: bigint };
      return m.type === type && m.version === version;
    });
    if (i < 0) throw new Error(`no message of type ${type} at version ${version} was sent`);
    return frames.splice(i, 1)[0]!;
  };
  return { frames, take };
}

describe('Updates: ties', () => {
  it('a proposal refused as a conflict is never signed after: the tie loser, who let it go, does not pay twice', async () => {
    // Retransmissions and the loser's pause stay out of the way of the hand-delivered frames.
    const { a, b, network } = agentPair(parties, undefined, { timing: { ...FAST, retransmitMs: 500, maxRetransmitMs: 1000 } });
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 100n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    await network.idle();
    expect(a.agent.channel(ch.id).idx).toBe(0); // A wins ties, B (participant 1) yields
    let holding = true;
    const fromA = gate(a, () => holding);
    const fromB = gate(b, () => holding);
    const deliver = async (from: Party, to: Party, frame: Uint8Array) => {
      network.forge(from.signer.address, to.signer.address, frame);
      await network.idle();
    };

    // A pays 1 at version 1; B signs it, but its acceptance is slow.
    const paidByA = a.agent.pay(ch.id, 1n);
    await until(() => fromA.frames.length > 0);
    await deliver(a, b, fromA.take(MessageType.Update, 1n));
    // B pays 2 on top of version 1. It reaches A while A's version 1 still waits: a tie, refused.
    const paidByB = b.agent.pay(ch.id, 2n);
    await until(() => fromB.frames.some((f) => decodeMessage(f).type === MessageType.Update));
    const bUpdate = fromB.take(MessageType.Update, 2n);
    await deliver(b, a, bUpdate);
    const conflict = fromA.take(MessageType.UpdateReject, 2n);
    // A's version 1 completes; then a duplicate of B's proposal arrives.
    await deliver(b, a, fromB.take(MessageType.UpdateAccept, 1n));
    await paidByA;
    await deliver(b, a, bUpdate);
    // B hears the refusal first: as the tie's loser it drops its proposal, to retry later.
    await deliver(a, b, conflict);
    for (const f of fromA.frames.splice(0)) await deliver(a, b, f);
    // A pays 3 on whatever it holds now; B signs that, then retries its own payment.
    holding = false;
    const paidByA2 = a.agent.pay(ch.id, 3n);
    await Promise.all([paidByA2, paidByB]);
    await network.idle();
    await until(() => !a.agent.channel(ch.id).staged && !b.agent.channel(ch.id).staged && a.agent.channel(ch.id).current.state.version === b.agent.channel(ch.id).current.state.version);

    const ra = a.agent.channel(ch.id).current.state;
    const rb = b.agent.channel(ch.id).current.state;
    expect(rb).toEqual(ra);
    // A paid 1 + 3, B paid 2, each once.
    expect(ra.outcome.balances).toEqual([[98n, 102n]]);
  });
});
