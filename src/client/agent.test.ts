import { describe, expect, it } from 'vitest';
import { FinalStateError, NegativeBalanceError, OpenRejectedError, UpdateRejectedError } from '../errors.ts';
import { MemoryNetwork } from '../transport/memory.ts';
import { decodeMessage, encodeMessage } from '../wire/codec.ts';
import { MAX_MESSAGE_BYTES, MessageType } from '../wire/messages.ts';
import { aliasOf } from '../channel/record.ts';
import { ChannelStore } from '../store/store.ts';
import { Agent } from './agent.ts';
import type { AgentOptions } from './types.ts';
import { agentPair, CHAIN, FAST, makeParty, stoppedAfterEach, tempDir, until } from '../testing/agents.ts';

const parties = stoppedAfterEach();

const pair = (network?: MemoryNetwork, extra?: Partial<AgentOptions>) => agentPair(parties, network, extra);

describe('Agent', () => {
  it('opens a channel, pays both ways, finalizes; both sides agree', async () => {
    const { a, b, network } = pair();
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 50n]] });
    expect(await until(() => b.agent.channels()[0]?.phase === 'open')).toBe(true);
    await a.agent.pay(ch.id, 30n);
    await b.agent.pay(ch.id, 10n);
    const fin = await a.agent.finalize(ch.id);
    await network.idle();
    expect(fin.state.isFinal).toBe(true);
    for (const p of [a, b]) {
      const rec = p.agent.channel(ch.id);
      expect(rec.phase).toBe('final');
      expect(rec.current.state.outcome.balances).toEqual([[80n, 70n]]);
      expect(rec.current.state.version).toBe(3n);
    }
    await expect(a.agent.pay(ch.id, 1n)).rejects.toBeInstanceOf(FinalStateError);
  });

  it('refuses to pay more than the balance, without changing anything', async () => {
    const { a, b } = pair();
    const ch = await a.agent.open(b.signer.address, { balances: [[10n, 0n]] });
    await expect(a.agent.pay(ch.id, 11n)).rejects.toBeInstanceOf(NegativeBalanceError);
    expect(a.agent.channel(ch.id).current.state.version).toBe(0n);
  });

  it('the peer refuses an update that takes its money, by default policy', async () => {
    const { a, b } = pair();
    const ch = await a.agent.open(b.signer.address, { balances: [[10n, 10n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    const idx = a.agent.channel(ch.id).idx;
    const grab = a.agent.update(ch.id, (s) => {
      const bal = s.outcome.balances[0]!;
      const next: [bigint, bigint] = idx === 0 ? [bal[0] + 5n, bal[1] - 5n] : [bal[0] - 5n, bal[1] + 5n];
      return { balances: [next], locked: [], isFinal: false };
    });
    await expect(grab).rejects.toBeInstanceOf(UpdateRejectedError);
    // The refused proposal is dropped; the next payment goes through at a higher version.
    const s = await a.agent.pay(ch.id, 1n);
    expect(s.state.outcome.balances[0]![idx]).toBe(9n);
  });

  it('a proposal it refused is never signed later: not when replayed, not when its policy has changed since', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    let willing = false;
    const a = makeParty(network, dir, 'a');
    const b = makeParty(network, dir, 'b', { policy: { acceptUpdate: () => willing } });
    parties.push(a, b);
    const proposals: Uint8Array[] = [];
    const send = a.transport.send.bind(a.transport);
    a.transport.send = (to, frame) => {
      if (decodeMessage(frame).type === MessageType.Update) proposals.push(frame);
      return send(to, frame);
    };
    const ch = await a.agent.open(b.signer.address, { balances: [[10n, 10n]] });
    await expect(a.agent.pay(ch.id, 5n)).rejects.toBeInstanceOf(UpdateRejectedError);
    willing = true;
    for (const frame of proposals) network.forge(a.signer.address, b.signer.address, frame);
    await network.idle();
    expect(b.agent.channel(ch.id).current.state.version).toBe(0n);
    expect(b.store.loadChannel(ch.id)!.highestSigned).toBe(1n);
    // The next payment goes at a version neither signed before.
    const s = await a.agent.pay(ch.id, 1n);
    expect(s.state.version).toBe(2n);
    expect(b.agent.channel(ch.id).current.state).toEqual(s.state);
  });

  it('a proposal that does not bear the peer\'s signature never reaches the policy', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    let asked = 0;
    const a = makeParty(network, dir, 'a');
    const b = makeParty(network, dir, 'b', { policy: { acceptUpdate: () => (asked++, 'hold') } });
    parties.push(a, b);
    const ch = await a.agent.open(b.signer.address, { balances: [[10n, 10n]] });
    const held: unknown[] = [];
    b.agent.on('held', (ctx) => held.push(ctx));
    const forged = { type: MessageType.Update, alias: aliasOf(ch.id), version: 1n, balances: [[5n, 15n]] as const, locked: [], isFinal: false, sig: new Uint8Array(65).fill(7) };
    network.forge(a.signer.address, b.signer.address, encodeMessage(forged));
    await network.idle();
    expect(asked).toBe(0);
    expect(held).toEqual([]);
    expect(b.agent.channel(ch.id).current.state.version).toBe(0n);
  });

  it('rejects a proposal for another chain', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const a = makeParty(network, dir, 'a', { chain: { ...CHAIN, chainId: 1n } });
    const b = makeParty(network, dir, 'b');
    parties.push(a, b);
    await expect(a.agent.open(b.signer.address, { balances: [[1n, 0n]] })).rejects.toBeInstanceOf(OpenRejectedError);
    expect(b.agent.channels()).toEqual([]);
  });

  it('simultaneous proposals: tie-break lets both complete, no version signed twice, no caller sees a conflict', async () => {
    const { a, b, network } = pair();
    const ch = await a.agent.open(b.signer.address, { balances: [[1000n, 1000n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    // Every message takes 3 ms: both sides' first proposals are in flight at once and cross.
    network.setFaults({ delayMs: 3 });
    const refused: string[] = [];
    for (const p of [a, b]) p.agent.on('rejected', (e) => refused.push(e.error.code));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a.agent.pay(ch.id, 1n) : b.agent.pay(ch.id, 2n))),
    );
    await network.idle();
    expect(results).toHaveLength(20);
    const ra = a.agent.channel(ch.id).current;
    const rb = b.agent.channel(ch.id).current;
    expect(ra.state.version).toBe(rb.state.version);
    expect(ra.state.outcome.balances).toEqual(rb.state.outcome.balances);
    const aIdx = a.agent.channel(ch.id).idx;
    expect(ra.state.outcome.balances[0]![aIdx]).toBe(1000n - 10n + 20n);
    expect(refused).toContain('UPDATE_CONFLICT');
  });

  it('survives garbage and forged messages from a peer without changing state', async () => {
    const { a, b, network } = pair();
    const ch = await a.agent.open(b.signer.address, { balances: [[10n, 0n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    const rejected: string[] = [];
    b.agent.on('rejected', (e) => rejected.push(e.error.code));
    const attacker = network.endpoint('0x00000000000000000000000000000000000000aa');
    await attacker.send(b.signer.address, new Uint8Array([0xff, 0x00, 0x13]));
    await attacker.send(b.signer.address, new Uint8Array(MAX_MESSAGE_BYTES + 1));
    const forged = encodeMessage({
      type: MessageType.Update,
      alias: aliasOf(ch.id),
      version: 5n,
      balances: [[0n, 10n]],
      locked: [],
      isFinal: false,
      sig: new Uint8Array(65),
    });
    await attacker.send(b.signer.address, forged);
    await network.idle();
    expect(b.agent.channel(ch.id).current.state.version).toBe(0n);
    expect(rejected).toEqual(expect.arrayContaining(['WIRE_MALFORMED', 'WIRE_TOO_LARGE', 'WRONG_PEER']));
  });

  it('every single-byte mutation of a real update is refused, or is that very update', async () => {
    const { a, b, network } = pair();
    const ch = await a.agent.open(b.signer.address, { balances: [[1000n, 1000n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    // A signs a payment that never reaches B.
    network.disconnect(b.signer.address);
    void a.agent.pay(ch.id, 7n).catch(() => undefined);
    await until(() => !!a.agent.channel(ch.id).staged);
    a.agent.stop();
    network.reconnect(b.signer.address);
    const staged = a.agent.channel(ch.id).staged!;
    const original = encodeMessage({ type: MessageType.Update, alias: aliasOf(ch.id), version: staged.state.version, balances: staged.state.outcome.balances, locked: [], isFinal: false, sig: staged.sig });
    let refused = 0;
    b.agent.on('rejected', () => refused++);
    // Each mutation arrives as if from A: the protocol, not the transport, must refuse it.
    for (let i = 0; i < original.length; i++) {
      for (const x of [0x01, 0x80, 0xff]) {
        const m = original.slice();
        m[i] = m[i]! ^ x;
        void a.transport.send(b.signer.address, m);
      }
    }
    await network.idle();
    const cur = b.agent.channel(ch.id).current.state;
    const isStaged = cur.version === staged.state.version && cur.outcome.balances[0]![1] === staged.state.outcome.balances[0]![1];
    expect(cur.version === 0n || isStaged).toBe(true);
    expect(refused).toBeGreaterThan(original.length);
  });

  it('a restarted agent resumes its channels from the store and resynchronises', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const a = makeParty(network, dir, 'a');
    const b = makeParty(network, dir, 'b');
    parties.push(a);
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 0n]] });
    for (let i = 0; i < 5; i++) await a.agent.pay(ch.id, 1n);
    b.agent.stop();
    b.store.close();
    network.disconnect(b.signer.address);
    // A pays while B is away: the proposal waits and is retransmitted.
    const pending = a.agent.pay(ch.id, 1n);
    const store = new ChannelStore(b.path, { durability: 'normal' });
    network.detach(b.signer.address);
    const b2 = new Agent({ signer: b.signer, transport: network.endpoint(b.signer.address), store, chain: CHAIN, timing: FAST });
    b2.start();
    parties.push({ ...b, agent: b2, store });
    const s = await pending;
    expect(s.state.version).toBe(6n);
    await network.idle();
    expect(b2.channel(ch.id).current.state.outcome.balances).toEqual([[94n, 6n]]);
  });
});
