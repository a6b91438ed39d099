import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { InvalidAllocationError, InvalidSignatureError, NegativeBalanceError, StaleVersionError, UpdateConflictError, UpdateInProgressError } from '../errors.ts';
import { totals } from '../model/allocation.ts';
import { outcomeHash } from '../model/hash.ts';
import type { State } from '../model/types.ts';
import { MessageType, RejectReason, type Update, type UpdateAccept, type UpdateReject } from '../wire/messages.ts';
import { openChannel, payBody } from '../testing/channels.ts';
import { type ChannelRecord, digestOf, isFullySigned, stateFromBody } from './record.ts';
import { signedByPeer, updateReject } from './control.ts';
import { makeSync, receiveSync } from './sync.ts';
import { MAX_VERSION_GAP, prepare, propose, receiveAccept, receiveReject, receiveUpdate, refuse, sendPrepared } from './update.ts';

// The pipelined update: A's next proposal goes out when an acceptance of the one in
// flight arrives, before that acceptance is verified. These tests pin down what every
// answer then does to A's record; the properties at the end, what any interleaving keeps.

/** A pays 10 (staged, version 1) and prepares 5 more on top (version 2). */
function pipelined() {
  const { a, b, sa, sb } = openChannel();
  const first = propose(a, sa, payBody(a, a.current.state, 10n));
  const withPrepared = prepare(first.record, sa, payBody(a, first.state, 5n));
  return { a: withPrepared, b, sa, sb, first: first.message };
}

function forged(accept: UpdateAccept): UpdateAccept {
  return { ...accept, sig: Signer.random().sign(new Uint8Array(32).fill(7)) };
}

function answer(b: ChannelRecord, sb: Signer, proposal: Update) {
  const result = receiveUpdate(b, sb, proposal);
  if (result.kind !== 'accepted') throw new Error(`B did not accept version ${proposal.version}`);
  return result;
}

describe('pipelined updates', () => {
  it('the prepared proposal goes out only on an acceptance of the staged one, once', () => {
    const { a, b, sb, first } = pipelined();
    const accept = answer(b, sb, first).reply;
    expect(sendPrepared(a, { ...accept, version: 2n })).toBeNull();
    const sent = sendPrepared(a, accept)!;
    expect(sent.message.version).toBe(2n);
    expect(sent.record.prepared?.sent).toBe(true);
    expect(sendPrepared(sent.record, accept)).toBeNull();
  });

  it('a valid acceptance of the staged proposal makes the sent one staged', () => {
    const { a, b, sb, first } = pipelined();
    const accept = answer(b, sb, first).reply;
    const sent = sendPrepared(a, accept)!;
    const result = receiveAccept(sent.record, accept)!;
    expect(result.completed).toBe('staged');
    expect(result.record.current.state.version).toBe(1n);
    expect(result.record.staged?.state.version).toBe(2n);
    expect(result.record.prepared).toBeNull();
  });

  it('a forged acceptance changes nothing; the acceptance of the sent proposal completes both, each payment once', () => {
    const { a, b, sb, first } = pipelined();
    const b1 = answer(b, sb, first);
    const sent = sendPrepared(a, forged(b1.reply))!;
    expect(() => receiveAccept(sent.record, forged(b1.reply))).toThrow(InvalidSignatureError);
    const b2 = answer(b1.record, sb, sent.message);
    const result = receiveAccept(sent.record, b2.reply)!;
    expect(result.completed).toBe('both');
    expect(result.record.current).toEqual(b2.record.current);
    expect(result.record.current.state.outcome.balances).toEqual([[85n, 115n]]);
    expect(result.record.staged).toBeNull();
    expect(result.record.prepared).toBeNull();
  });

  it('a refusal of the staged proposal waits for the answer to the sent one, which decides for both', () => {
    const { a, b, sa, sb, first } = pipelined();
    const sent = sendPrepared(a, { type: MessageType.UpdateAccept, alias: first.alias, version: 1n, sig: new Uint8Array(65) })!;
    const refuse = (version: bigint) => updateReject(b, sb, version, RejectReason.Policy);
    expect(receiveReject(sent.record, sa, refuse(1n))).toBeNull();
    const result = receiveReject(sent.record, sa, refuse(2n))!;
    expect(result.kind).toBe('failed');
    if (result.kind !== 'failed') return;
    expect(result.record.staged).toBeNull();
    expect(result.record.prepared).toBeNull();
    // Versions 1 and 2 stay signed: the next proposal takes a fresh one.
    expect(propose(result.record, sa, payBody(a, a.current.state, 1n)).state.version).toBe(3n);
  });

  it('a crossed refusal of the sent proposal re-proposes the staged change at a fresh version', () => {
    const { a, b, sa, sb, first } = pipelined();
    const sent = sendPrepared(a, { type: MessageType.UpdateAccept, alias: first.alias, version: 1n, sig: new Uint8Array(65) })!;
    const result = receiveReject(sent.record, sa, updateReject(b, sb, 2n, RejectReason.Conflict))!;
    expect(result.kind).toBe('retry');
    if (result.kind !== 'retry') return;
    expect(result.proposal.state.version).toBe(3n);
    expect(result.proposal.state.outcome.balances).toEqual([[90n, 110n]]);
    expect(result.proposal.record.prepared).toBeNull();
  });

  it('a resync completes the sent proposal like an acceptance would', () => {
    const { a, b, sa, sb, first } = pipelined();
    const b1 = answer(b, sb, first);
    const sent = sendPrepared(a, forged(b1.reply))!;
    // B holds version 1 only: A's staged proposal is done, the sent one stays out.
    const at1 = receiveSync(sent.record, sa, makeSync(b1.record)!);
    expect(at1.staged).toBe('completed');
    expect(at1.record?.staged?.state.version).toBe(2n);
    expect(at1.record?.prepared).toBeNull();
    // B holds version 2: both are done.
    const b2 = answer(b1.record, sb, sent.message);
    const at2 = receiveSync(sent.record, sa, makeSync(b2.record)!);
    expect(at2.staged).toBe('bothCompleted');
    expect(at2.record?.staged).toBeNull();
    expect(at2.record?.current.state.outcome.balances).toEqual([[85n, 115n]]);
  });

  it('a resync drops a prepared proposal that never went out', () => {
    const { a, b, sa, sb, first } = pipelined();
    const b1 = answer(b, sb, first);
    const result = receiveSync(a, sa, makeSync(b1.record)!);
    expect(result.staged).toBe('completed');
    expect(result.record?.staged).toBeNull();
    expect(result.record?.prepared).toBeNull();
    expect(result.record?.highestSigned).toBe(2n);
  });

  it('A offers the sent proposal when it resyncs', () => {
    const { a, b, sb, first } = pipelined();
    const sent = sendPrepared(a, answer(b, sb, first).reply)!;
    expect(makeSync(sent.record)?.staged?.version).toBe(2n);
  });
});

describe('final states', () => {
  /** A and B's channel after B agreed to lock 30 of A's for a virtual channel. */
  function withLock() {
    const { a, b, sa, sb } = openChannel();
    const entry = { id: `0x${'ab'.repeat(32)}` as const, balances: [30n], indexMap: [0, 1] as const };
    const first = propose(a, sa, { balances: [[70n, 100n]], locked: [entry], isFinal: false });
    const accepted = answer(b, sb, first.message);
    const done = receiveAccept(first.record, accepted.reply)!;
    return { a: done.record, b: accepted.record, sa, sb, entry };
  }

  it('neither side signs a final state that still locks a virtual channel', () => {
    const { a, b, sa, sb, entry } = withLock();
    expect(() => propose(a, sa, { balances: [[70n, 100n]], locked: [entry], isFinal: true })).toThrow(InvalidAllocationError);
    // The peer signs one anyway and sends it, as a hostile peer would: refused, unsigned.
    const body = { version: b.current.state.version + 1n, balances: [[70n, 100n]] as const, locked: [entry], isFinal: true };
    const result = receiveUpdate(a, sa, { ...body, sig: sb.sign(digestOf(a, stateFromBody(a, body))) });
    expect(result.kind).toBe('rejected');
    expect(result.kind === 'rejected' && result.reply.reason).toBe(RejectReason.InvalidAllocation);
  });

  it('once the lock is sent, the final state is signed', () => {
    const { a, sa } = withLock();
    expect(propose(a, sa, { balances: [[100n, 100n]], locked: [], isFinal: true }).state.isFinal).toBe(true);
  });
});

describe('update protocol properties', () => {
  /** secp256k1's group order: private keys are 1..N-1. */
  const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const signerFrom = (key: bigint) => new Signer(Uint8Array.from(Buffer.from(key.toString(16).padStart(64, '0'), 'hex')));

  type Msg = Update | UpdateAccept | UpdateReject;
  /** One side as its agent runs it: its record, and the highest version the peer was seen to propose in a tie. */
  interface Side {
    rec: ChannelRecord;
    signer: Signer;
    peerSigned: bigint;
  }

  /** Handles one message at `self` as the agent would (see client/updates.ts); returns what it sends back. */
  function handle(self: Side, msg: Msg): Msg[] {
    switch (msg.type) {
      case MessageType.Update: {
        const result = receiveUpdate(self.rec, self.signer, msg);
        if (result.kind === 'accepted') {
          self.rec = result.record;
          self.peerSigned = -1n;
        }
        if (result.kind === 'rejected' && result.error instanceof UpdateConflictError && msg.version > self.peerSigned) self.peerSigned = msg.version;
        return [result.reply];
      }
      case MessageType.UpdateAccept: {
        const result = receiveAccept(self.rec, msg);
        if (result) {
          self.rec = result.record;
          self.peerSigned = -1n;
        }
        return [];
      }
      case MessageType.UpdateReject: {
        const result = receiveReject(self.rec, self.signer, msg, self.peerSigned);
        if (result?.kind === 'retry') {
          self.rec = result.proposal.record;
          return [result.proposal.message];
        }
        if (result) self.rec = result.record;
        return [];
      }
    }
  }

  const op = fc.oneof(
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('pay' as const), side: fc.constantFrom<0 | 1>(0, 1), amount: fc.bigInt({ min: 0n, max: 120n }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('deliver' as const), to: fc.constantFrom<0 | 1>(0, 1) }) },
  );

  it('random interleavings of payments by both sides, ties included: totals conserved, no balance below zero, highestSigned monotone, one state per version, and both end on the same state', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 10, maxLength: 40 }), (ops) => {
        const { a, b, sa, sb } = openChannel();
        const sides: [Side, Side] = [
          { rec: a, signer: sa, peerSigned: -1n },
          { rec: b, signer: sb, peerSigned: -1n },
        ];
        // In-order delivery per direction; inbox[i] holds what side i has yet to receive.
        const inbox: [Msg[], Msg[]] = [[], []];
        const total = totals(a.current.state.outcome);
        // Every state either side signed, by version: none may get a second one.
        const signed = [new Map<bigint, string>(), new Map<bigint, string>()];
        const keyOf = (s: State) => `${outcomeHash(s.outcome)}:${s.isFinal}`;
        const note = (i: 0 | 1, s: State) => {
          const seen = signed[i]!.get(s.version);
          if (seen !== undefined) expect(keyOf(s)).toBe(seen);
          else signed[i]!.set(s.version, keyOf(s));
        };
        const check = (before: readonly ChannelRecord[]) => {
          sides.forEach((side, i) => {
            const rec = side.rec;
            expect(rec.highestSigned).toBeGreaterThanOrEqual(before[i]!.highestSigned);
            expect(rec.current.state.version).toBeGreaterThanOrEqual(before[i]!.current.state.version);
            expect(isFullySigned(rec.current)).toBe(true);
            for (const s of [rec.current.state, ...(rec.staged ? [rec.staged.state] : [])]) {
              expect(totals(s.outcome)).toEqual(total);
              for (const pair of s.outcome.balances) for (const x of pair) expect(x).toBeGreaterThanOrEqual(0n);
              expect(s.version).toBeLessThanOrEqual(rec.highestSigned);
            }
            note(i as 0 | 1, rec.current.state);
            if (rec.staged) note(i as 0 | 1, rec.staged.state);
          });
          // Fully signed states agree across the two sides too.
          if (sides[0].rec.current.state.version === sides[1].rec.current.state.version) expect(sides[0].rec.current).toEqual(sides[1].rec.current);
        };
        const deliverTo = (i: 0 | 1) => {
          const msg = inbox[i].shift();
          if (msg) inbox[i === 0 ? 1 : 0].push(...handle(sides[i], msg));
        };

        for (const o of ops) {
          const before = sides.map((s) => s.rec);
          if (o.kind === 'deliver') {
            deliverTo(o.to);
          } else {
            const me = sides[o.side];
            const rec = me.rec;
            const pair = rec.current.state.outcome.balances[0]!;
            const mine = pair[rec.idx];
            const theirs = pair[rec.idx === 0 ? 1 : 0];
            // What this side asks for, overdrafts included: the protocol must refuse those.
            const next: [bigint, bigint] = rec.idx === 0 ? [mine - o.amount, theirs + o.amount] : [theirs + o.amount, mine - o.amount];
            const body = { balances: [next] as const, locked: [], isFinal: false };
            if (rec.staged) {
              expect(() => propose(rec, me.signer, body, me.peerSigned)).toThrow(UpdateInProgressError);
            } else if (o.amount > mine) {
              expect(() => propose(rec, me.signer, body, me.peerSigned)).toThrow(NegativeBalanceError);
            } else {
              const proposal = propose(rec, me.signer, body, me.peerSigned);
              me.rec = proposal.record;
              inbox[o.side === 0 ? 1 : 0].push(proposal.message);
            }
          }
          check(before);
        }
        // Then the network delivers everything still in flight, and no one pays any more.
        for (let steps = 0; inbox[0].length > 0 || inbox[1].length > 0; steps++) {
          expect(steps).toBeLessThan(200);
          const before = sides.map((s) => s.rec);
          deliverTo(0);
          deliverTo(1);
          check(before);
        }
        expect(sides[0].rec.current).toEqual(sides[1].rec.current);
        expect(sides[0].rec.staged).toBeNull();
        expect(sides[1].rec.staged).toBeNull();
      }),
      { numRuns: 60 },
    );
  });

  it('a version refused with refuse() is never signed later by that side, whatever is proposed at it; the next version still is', () => {
    const { a, b, sa, sb } = openChannel();
    const split = fc.bigInt({ min: 0n, max: 200n });
    /** B's proposal to A at `version`, signed by B. */
    const byPeer = (version: bigint, x: bigint, isFinal: boolean) => {
      const body = { version, balances: [[x, 200n - x]] as const, locked: [], isFinal };
      return { ...body, sig: sb.sign(digestOf(a, stateFromBody(a, body))) };
    };
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: MAX_VERSION_GAP }),
        fc.constantFrom(...Object.values(RejectReason)),
        fc.array(fc.tuple(split, fc.boolean()), { minLength: 1, maxLength: 4 }),
        split,
        (v, reason, proposals, nextSplit) => {
          const first = byPeer(v, proposals[0]![0], proposals[0]![1]);
          // The refused proposal would have been signed: the refusal alone stops it.
          expect(receiveUpdate(a, sa, first).kind).toBe('accepted');
          const { record, reply } = refuse(a, sa, v, reason);
          expect(record.highestSigned).toBe(v);
          expect(signedByPeer(b, reply)).toBe(true);
          expect({ ...reply, sig: null }).toEqual({ type: MessageType.UpdateReject, alias: reply.alias, version: v, reason, sig: null });
          // Its retransmission, or any other proposal at that version (or below), is refused as stale.
          for (const msg of [first, ...proposals.map(([x, f]) => byPeer(v, x, f)), byPeer(v - 1n, nextSplit, false)]) {
            const result = receiveUpdate(record, sa, msg);
            expect(result.kind).not.toBe('accepted');
            expect(result.kind === 'rejected' && result.error).toBeInstanceOf(StaleVersionError);
            expect(result.kind === 'rejected' && result.reply.reason).toBe(RejectReason.StaleVersion);
          }
          // A proposal of its own takes a version above it too.
          expect(propose(record, sa, { balances: [[100n, 100n]], locked: [], isFinal: false }).state.version).toBe(v + 1n);
          // The channel goes on above it.
          const next = receiveUpdate(record, sa, byPeer(v + 1n, nextSplit, false));
          expect(next.kind).toBe('accepted');
          expect(next.kind === 'accepted' && next.record.highestSigned).toBe(v + 1n);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('receiveUpdate refuses a proposal signed by anyone but the peer, signs nothing and returns no record', () => {
    const { a, sa } = openChannel();
    const before = structuredClone(a);
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(null), fc.bigInt({ min: 1n, max: N - 1n })),
        fc.bigInt({ min: 1n, max: MAX_VERSION_GAP }),
        fc.bigInt({ min: 0n, max: 200n }),
        (key, version, x) => {
          // Another key, or A's own (a reflected message).
          const forger = key === null ? sa : signerFrom(key);
          const body = { version, balances: [[x, 200n - x]] as const, locked: [], isFinal: false };
          const msg = { ...body, sig: forger.sign(digestOf(a, stateFromBody(a, body))) };
          const result = receiveUpdate(a, sa, msg);
          expect(result.kind).toBe('rejected');
          expect('record' in result).toBe(false);
          if (result.kind !== 'rejected') return;
          expect(result.error).toBeInstanceOf(InvalidSignatureError);
          expect(result.reply.reason).toBe(RejectReason.InvalidSignature);
          expect(result.reply.version).toBe(version);
          expect(a).toEqual(before);
        },
      ),
      { numRuns: 50 },
    );
  });
});
