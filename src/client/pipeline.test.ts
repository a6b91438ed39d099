import { describe, expect, it } from 'vitest';
import type { ChannelRecord } from '../channel/record.ts';
import { updateReject } from '../channel/control.ts';
import { makeSync } from '../channel/sync.ts';
import { receiveUpdate } from '../channel/update.ts';
import { Signer } from '../crypto/keys.ts';
import { StoreError } from '../errors.ts';
import { ChannelStore } from '../store/store.ts';
import { MemoryNetwork } from '../transport/memory.ts';
import { decodeMessage, encodeMessage } from '../wire/codec.ts';
import { type Message, MessageType, RejectReason, type UpdateAccept } from '../wire/messages.ts';
import { agentPair, CHAIN, FAST, makeParty, type Party, sleep, stoppedAfterEach, tempDir, until } from '../testing/agents.ts';
import type { AgentOptions } from './types.ts';
import { proposeOpen } from '../channel/open.ts';
import { ChannelKind, NATIVE_ASSET } from '../model/types.ts';

// Pipelined updates against peers that misbehave: the next proposal leaves when an
// acceptance arrives, before it is verified, so every answer a peer can give afterwards
// (forged, refused, refused and then shown signed) must leave each payment applied once.
// Also: a store that refuses a write stops the agent before anything depends on it.

const parties = stoppedAfterEach();

const pair = (network?: MemoryNetwork, extra?: Partial<AgentOptions>) => agentPair(parties, network, extra);

/** `p` sends `instead(acceptance)` in place of its acceptance of `version`. */
function replaceAcceptance(p: Party, version: bigint, instead: (m: UpdateAccept) => Message[]): void {
  const send = p.transport.send.bind(p.transport);
  p.transport.send = async (to, frame) => {
    const m = decodeMessage(frame);
    if (m.type !== MessageType.UpdateAccept || m.version !== version) return send(to, frame);
    for (const other of instead(m)) await send(to, encodeMessage(other));
  };
}

const forgedSig = (): Uint8Array => Signer.random().sign(new Uint8Array(32).fill(1));

describe('pipelined updates with a misbehaving peer', () => {
  it('queued payments: the next proposal leaves before the acceptance is checked; a forged one changes nothing, each payment lands once', async () => {
    // Every message takes 5 ms: A has prepared its second payment when the first is
    // answered. No retransmission meanwhile, so that only the acceptances can settle them.
    const { a, b } = pair(new MemoryNetwork({ faults: { delayMs: 5 } }), { timing: { ...FAST, retransmitMs: 2000 } });
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 100n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    // B's acceptance of version 1 arrives with someone else's signature.
    replaceAcceptance(b, 1n, (m) => [{ ...m, sig: forgedSig() }]);
    const refused: string[] = [];
    a.agent.on('rejected', (e) => refused.push(e.error.code));
    const [first, second] = await Promise.all([a.agent.pay(ch.id, 10n), a.agent.pay(ch.id, 5n)]);
    expect(refused).toContain('INVALID_SIGNATURE');
    // B's acceptance of version 2 settles both.
    expect(first.state.version).toBe(2n);
    expect(second.state.version).toBe(2n);
    for (const p of [a, b]) expect(p.agent.channel(ch.id).current.state.outcome.balances).toEqual([[85n, 115n]]);
    await a.agent.pay(ch.id, 1n);
    expect(b.agent.channel(ch.id).current.state.outcome.balances).toEqual([[84n, 116n]]);
  });

  it('a payment the peer refused but then shows signed is done, never paid twice', async () => {
    const { a, b, network } = pair();
    // B opens, so A is participant 1: after a conflict A's request waits and is built again.
    const ch = await b.agent.open(a.signer.address, { balances: [[100n, 100n]] });
    await until(() => a.agent.channels()[0]?.phase === 'open');
    // B signs A's proposal of version 1 but answers "conflict", then offers it in a resync.
    replaceAcceptance(b, 1n, (m) => [
      updateReject(b.agent.channel(ch.id), b.signer, 1n, RejectReason.Conflict),
      makeSync(b.agent.channel(ch.id))!,
    ]);
    const paid = await a.agent.pay(ch.id, 10n);
    expect(paid.state.version).toBe(1n);
    await network.idle();
    for (const p of [a, b]) expect(p.agent.channel(ch.id).current.state.outcome.balances).toEqual([[110n, 90n]]);
  });


  it('forged acceptance, then "conflict" for the proposal it released, then that proposal shown signed: both payments once', async () => {
    const { a, b } = pair();
    // B opens, so A is participant 1 and retries after a conflict.
    const ch = await b.agent.open(a.signer.address, { balances: [[100n, 100n]] });
    await until(() => a.agent.channels()[0]?.phase === 'open');
    // From here B is scripted: it signs everything A proposes, and answers as below.
    b.agent.stop();
    let bRec: ChannelRecord = b.agent.channel(ch.id);
    const toA = (m: Message): void => void b.transport.send(a.signer.address, encodeMessage(m));
    let shown = false;
    b.transport.setHandler({
      message: async (_from, frame) => {
        const m = decodeMessage(frame);
        if (m.type !== MessageType.Update) return;
        if (m.version > 2n && !shown) {
          shown = true;
          await sleep(20); // A prepares its next proposal behind this one
          return toA(makeSync(bRec)!); // version 2, both signatures
        }
        // Like the default policy, B never signs a state that pays it less than the one it holds.
        if (m.balances[0]![0] < bRec.current.state.outcome.balances[0]![0]) {
          return toA(updateReject(bRec, b.signer, m.version, RejectReason.Policy));
        }
        const signed = receiveUpdate(bRec, b.signer, m);
        if (signed.kind === 'accepted') bRec = signed.record;
        if (m.version === 1n) {
          await sleep(20); // A prepares version 2 meanwhile
          toA({ ...signed.reply, sig: forgedSig() } as UpdateAccept);
        } else if (m.version === 2n) {
          toA(updateReject(bRec, b.signer, 2n, RejectReason.Conflict));
        } else {
          toA(signed.reply);
        }
      },
    });
    const [ten, five] = await Promise.all([a.agent.pay(ch.id, 10n), a.agent.pay(ch.id, 5n)]);
    expect(ten.state.version).toBe(2n);
    expect(five.state.version).toBe(2n);
    await sleep(50);
    expect(a.agent.channel(ch.id).current.state.outcome.balances).toEqual([[115n, 85n]]);
  });

  it('a proposal that left before a restart is still out after it, and the peer\'s answer settles it', async () => {
    const network = new MemoryNetwork({ faults: { delayMs: 5 } });
    const dir = tempDir();
    const timing = { ...FAST, retransmitMs: 2000 };
    const a = makeParty(network, dir, 'a', { timing });
    const b = makeParty(network, dir, 'b', { timing });
    parties.push(b);
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 100n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    // B forges its acceptance of version 1 and withholds that of version 2.
    replaceAcceptance(b, 1n, (m) => [{ ...m, sig: forgedSig() }]);
    replaceAcceptance(b, 2n, () => []);
    const pays = Promise.allSettled([a.agent.pay(ch.id, 10n), a.agent.pay(ch.id, 5n)]);
    await until(() => b.agent.channel(ch.id).current.state.version === 2n);
    await sleep(20);
    a.agent.stop();
    a.store.close();
    await pays;
    network.detach(a.signer.address);
    const store = new ChannelStore(a.path, { durability: 'normal' });
    const restarted = makeParty(network, dir, 'a2', { timing: FAST }, a.signer, store);
    parties.push(restarted);
    expect(restarted.agent.channel(ch.id).prepared?.sent).toBe(true);
    // The resync settles both of A's proposals with B's version 2.
    expect(await until(() => restarted.agent.channel(ch.id).current.state.version === 2n)).toBe(true);
    const rec = restarted.agent.channel(ch.id);
    expect(rec.current.state.outcome.balances).toEqual([[85n, 115n]]);
    expect(rec.staged).toBeNull();
    expect(rec.prepared).toBeNull();
  });

  it('a store that refuses a write stops the agent: nothing that depends on it is sent, every request fails', async () => {
    class FailingStore extends ChannelStore {
      fail = false;
      override saveChannels(...args: Parameters<ChannelStore['saveChannels']>): void {
        if (this.fail) throw new Error('SQLITE_FULL: database or disk is full');
        super.saveChannels(...args);
      }
    }
    const network = new MemoryNetwork();
    const dir = tempDir();
    const store = new FailingStore(`${dir}/a.db`, { durability: 'normal' });
    const a = makeParty(network, dir, 'a', {}, undefined, store);
    const b = makeParty(network, dir, 'b');
    parties.push(a, b);
    const ch = await a.agent.open(b.signer.address, { balances: [[100n, 100n]] });
    await until(() => b.agent.channels()[0]?.phase === 'open');
    const failed: StoreError[] = [];
    a.agent.on('failed', (e) => failed.push(e));
    store.fail = true;
    const results = await Promise.allSettled([a.agent.pay(ch.id, 10n), a.agent.pay(ch.id, 5n)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
    expect(failed).toHaveLength(1);
    await sleep(50);
    // B never saw a proposal: A signed one, but could not store it.
    expect(b.agent.channel(ch.id).current.state.version).toBe(0n);
    await expect(a.agent.pay(ch.id, 1n)).rejects.toThrow();
  });
});

describe('opens with a full disk or a forged proposal', () => {
  class FullDisk extends ChannelStore {
    full = false;
    #check(): void {
      if (this.full) throw new Error('SQLITE_FULL: database or disk is full');
    }
    override savePendingOpen(...args: Parameters<ChannelStore['savePendingOpen']>): void {
      this.#check();
      super.savePendingOpen(...args);
    }
    override saveAcceptedOpen(...args: Parameters<ChannelStore['saveAcceptedOpen']>): void {
      this.#check();
      super.saveAcceptedOpen(...args);
    }
  }

  it('a proposer whose store refuses the proposal stops: open() fails with StoreError, nothing is sent', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const store = new FullDisk(`${dir}/a.db`, { durability: 'normal' });
    const a = makeParty(network, dir, 'a', {}, undefined, store);
    const b = makeParty(network, dir, 'b');
    parties.push(a, b);
    const failed: StoreError[] = [];
    a.agent.on('failed', (e) => failed.push(e));
    store.full = true;
    await expect(a.agent.open(b.signer.address, { balances: [[1n, 1n]] })).rejects.toBeInstanceOf(StoreError);
    expect(failed).toHaveLength(1);
    await network.idle();
    expect(b.agent.channels()).toEqual([]);
    await expect(a.agent.open(b.signer.address, { balances: [[1n, 1n]] })).rejects.toBeInstanceOf(StoreError);
  });

  it('an accepter whose store refuses the channel stops and never sends its acceptance', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    const store = new FullDisk(`${dir}/b.db`, { durability: 'normal' });
    const a = makeParty(network, dir, 'a', { timing: { ...FAST, requestTimeoutMs: 300 } });
    const b = makeParty(network, dir, 'b', {}, undefined, store);
    parties.push(a, b);
    const failed: StoreError[] = [];
    b.agent.on('failed', (e) => failed.push(e));
    store.full = true;
    await expect(a.agent.open(b.signer.address, { balances: [[1n, 1n]] })).rejects.toThrow();
    expect(failed).toHaveLength(1);
    expect(a.agent.channels()).toEqual([]);
  });

  it('no policy ever sees a forged proposal: it is refused before the policy runs', async () => {
    const network = new MemoryNetwork();
    const dir = tempDir();
    let asked = 0;
    const b = makeParty(network, dir, 'b', { policy: { acceptOpen: () => (asked++, true) } });
    parties.push(b);
    const victim = Signer.random();
    const mallory = Signer.random();
    // Signed by Mallory, sent under the victim's name.
    const { message } = proposeOpen(mallory, { peer: b.signer.address, ...CHAIN, challengeDuration: 3600n, kind: ChannelKind.Ledger, assets: [NATIVE_ASSET], balances: [[1n, 1n]] });
    network.forge(victim.address, b.signer.address, encodeMessage(message));
    await network.idle();
    expect(asked).toBe(0);
    expect(b.agent.channels()).toEqual([]);
  });
});
