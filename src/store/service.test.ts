import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../testing/agents.ts';
import { ChannelStore } from './store.ts';

describe('ServiceRecords', () => {
  it('keeps facts and funded virtual channels across a reopen, prefixes in key order', () => {
    const path = join(tempDir(), 'g.db');
    const store = new ChannelStore(path);
    store.service.setFact('tx:000000000002', { nonce: 2 });
    store.service.setFact('tx:000000000001', { nonce: 1n });
    store.service.setFact('deposit:0xab', true);
    store.service.saveVirtual(`0x${'cd'.repeat(32)}`, { id: 'x', total: 5n });
    store.close();
    const again = new ChannelStore(path);
    expect(again.service.factsWithPrefix('tx:')).toEqual([
      { key: 'tx:000000000001', value: { nonce: 1n } },
      { key: 'tx:000000000002', value: { nonce: 2 } },
    ]);
    expect(again.service.fact('deposit:0xab')).toBe(true);
    expect(again.service.fact('closed:0xab')).toBeUndefined();
    expect(again.service.loadVirtuals()).toEqual([{ id: 'x', total: 5n }]);
    again.service.deleteFact('deposit:0xab');
    again.service.deleteVirtual(`0x${'cd'.repeat(32)}`);
    expect(again.service.fact('deposit:0xab')).toBeUndefined();
    expect(again.service.loadVirtuals()).toEqual([]);
    again.close();
  });

  it("shares the channels' transactions: a failed step leaves no fact behind", () => {
    const store = new ChannelStore(':memory:');
    expect(() =>
      store.atomically(() => {
        store.service.setFact('closed:0xab', true);
        throw new Error('step failed');
      }),
    ).toThrow('step failed');
    expect(store.service.fact('closed:0xab')).toBeUndefined();
    store.close();
  });
});
