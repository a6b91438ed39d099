import { describe, expect, it } from 'vitest';
import { agentPair, FAST, stoppedAfterEach, until } from '../src/testing/agents.ts';
import { ProtocolTimeoutError } from '../src/errors.ts';
import { payOnce } from './pay.ts';

const parties = stoppedAfterEach();

describe('payOnce', () => {
  it('pays once although the first try timed out and its proposal landed later: a blind retry would pay twice', async () => {
    const { a, b, network } = agentPair(parties, undefined, { timing: { ...FAST, requestTimeoutMs: 300 } });
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 100n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    // The payee is away: the proposal goes unanswered past the request's deadline.
    network.disconnect(b.signer.address);
    const retries: unknown[] = [];
    const paid = payOnce(a.agent, ch.id, 7n, 30_000, (err) => {
      retries.push(err);
      // It is back once the first try has failed: the proposal still out is signed now.
      network.reconnect(b.signer.address);
    });
    await paid;
    await until(() => b.agent.channel(ch.id).current.state.version === a.agent.channel(ch.id).current.state.version);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toBeInstanceOf(ProtocolTimeoutError);
    expect(a.agent.channel(ch.id).current.state.outcome.balances).toEqual([[93n, 107n]]);
    expect(b.agent.channel(ch.id).current.state.outcome.balances).toEqual([[93n, 107n]]);
  });

  it('against a payee that never answers, gives up after its patience without proposing a second payment', async () => {
    const { a, b, network } = agentPair(parties, undefined, { timing: { ...FAST, requestTimeoutMs: 200 } });
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 100n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    network.disconnect(b.signer.address);
    const version = a.agent.channel(ch.id).current.state.version;
    await expect(payOnce(a.agent, ch.id, 7n, 1_000)).rejects.toThrow(ProtocolTimeoutError);
    // One proposal is out (it may still land once the payee is back), and no other was made on top of it.
    expect(a.agent.channel(ch.id).staged?.state.version).toBe(version + 1n);
    expect(a.agent.channel(ch.id).prepared ?? null).toBeNull();
    network.reconnect(b.signer.address);
    await until(() => b.agent.channel(ch.id).current.state.version === version + 1n && !a.agent.channel(ch.id).staged);
    expect(a.agent.channel(ch.id).current.state.outcome.balances).toEqual([[93n, 107n]]);
  });
});
