import { describe, expect, it } from 'vitest';
import type { ChannelRecord } from '../channel/record.ts';
import type { ChannelStorage } from '../store/types.ts';
import { Outbox } from './outbox.ts';

const rec = (id: number, v: bigint): ChannelRecord => ({ id: `0x${id.toString(16).padStart(64, '0')}`, current: { state: { version: v } } }) as unknown as ChannelRecord;

function storage(fail = false) {
  const commits: { ids: string[]; durable: boolean }[] = [];
  const store = {
    saveChannels(recs: readonly ChannelRecord[], durable: boolean) {
      if (fail) throw new Error('disk full');
      commits.push({ ids: recs.map((r) => `${r.id.slice(-1)}@${r.current.state.version}`), durable });
    },
  } as unknown as ChannelStorage;
  return { store, commits };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('Outbox', () => {
  it('lands every write of a turn in one commit, the last of each channel, before what waits on it', async () => {
    const { store, commits } = storage();
    const out = new Outbox(store, () => expect.unreachable());
    const ran: string[] = [];
    out.write(rec(1, 1n), false);
    out.after(() => ran.push(`sent after ${commits.length} commit(s)`));
    out.write(rec(2, 1n), false);
    out.write(rec(1, 2n), true);
    expect(commits).toEqual([]);
    await turn();
    expect(commits).toEqual([{ ids: ['1@2', '2@1'], durable: true }]);
    expect(ran).toEqual(['sent after 1 commit(s)']);
    out.after(() => ran.push('at once'));
    expect(ran).toHaveLength(2);
  });

  it('a write that fails runs nothing that waited on it and reports who was waiting', async () => {
    const { store } = storage(true);
    let failed: unknown[] = [];
    const out = new Outbox(store, (_err, waiting) => (failed = [...waiting]));
    const waiter = { reject: () => undefined };
    const ran: string[] = [];
    out.write(rec(1, 1n), true);
    out.waitOn(waiter);
    out.after(() => ran.push('sent'));
    await turn();
    expect(ran).toEqual([]);
    expect(failed).toEqual([waiter]);
  });
});
