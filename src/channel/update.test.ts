import { describe, expect, it } from 'vitest';
import { Signer } from '../crypto/keys.ts';
import { InvalidAllocationError, InvalidSignatureError } from '../errors.ts';
import { transfer } from '../model/allocation.ts';
import { type Address, ChannelKind, type State } from '../model/types.ts';
import { MessageType, RejectReason, type Update, type UpdateAccept } from '../wire/messages.ts';
import { acceptOpen, completeOpen, proposeOpen } from './open.ts';
import { type ChannelRecord, digestOf, stateFromBody } from './record.ts';
import { updateReject } from './control.ts';
import { makeSync, receiveSync } from './sync.ts';
import { prepare, propose, receiveAccept, receiveReject, receiveUpdate, sendPrepared } from './update.ts';

// The pipelined update: A's next proposal goes out when an acceptance of the one in
// flight arrives, before that acceptance is verified. These tests pin down what every
// answer then does to A's record.

const ZERO = '0x0000000000000000000000000000000000000000' as Address;

/** An open channel between fresh signers A (participant 0) and B, 100 each. */
function openChannel(): { a: ChannelRecord; b: ChannelRecord; sa: Signer; sb: Signer } {
  const sa = Signer.random();
  const sb = Signer.random();
  const pending = proposeOpen(sa, {
    peer: sb.address,
    chainId: 31337n,
    adjudicator: '0x5fbdb2315678afecb367f032d93f642f64180aa3',
    challengeDuration: 3600n,
    kind: ChannelKind.Ledger,
    assets: [ZERO],
    balances: [[100n, 100n]],
  });
  const accepted = acceptOpen(sb, pending.message, sa.address, pending.context.chain);
  const completed = completeOpen(sa, pending, accepted.reply);
  const b = receiveAccept(accepted.record, completed.reply)!.record;
  return { a: completed.record, b, sa, sb };
}

/** The body of a proposal in which `rec`'s side pays `amount` on top of `base`. */
function payBody(rec: ChannelRecord, base: State, amount: bigint) {
  const outcome = transfer(base.outcome, rec.idx, amount);
  return { balances: outcome.balances, locked: outcome.locked, isFinal: false };
}

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
