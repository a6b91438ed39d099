import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../testing/agents.ts';
import { ChannelStore } from './store.ts';

describe('GatewayRecords', () => {
  it('keeps facts and funded virtual channels across a reopen, prefixes in key order', () => {
    const path = join(tempDir(), 'g.db');
    const store = new ChannelStore(path);
    store.gateway.setFact('tx:000000000002', { nonce: 2 });
    store.gateway.setFact('tx:000000000001', { nonce: 1n });
    store.gateway.setFact('deposit:0xab', true);
    store.gateway.saveVirtual(`0x${'cd'.repeat(32)}`, { id: 'x', total: 5n });
    store.close();
    const again = new ChannelStore(path);
    expect(again.gateway.factsWithPrefix('tx:')).toEqual([
      { key: 'tx:000000000001', value: { nonce: 1n } },
      { key: 'tx:000000000002', value: { nonce: 2 } },
    ]);
    expect(again.gateway.fact('deposit:0xab')).toBe(true);
    expect(again.gateway.fact('closed:0xab')).toBeUndefined();
    expect(again.gateway.loadVirtuals()).toEqual([{ id: 'x', total: 5n }]);
    again.gateway.deleteFact('deposit:0xab');
    again.gateway.deleteVirtual(`0x${'cd'.repeat(32)}`);
    expect(again.gateway.fact('deposit:0xab')).toBeUndefined();
    expect(again.gateway.loadVirtuals()).toEqual([]);
    again.close();
  });

  it("shares the channels' transactions: a failed step leaves no fact behind", () => {
    const store = new ChannelStore(':memory:');
    expect(() =>
      store.atomically(() => {
        store.gateway.setFact('closed:0xab', true);
        throw new Error('step failed');
      }),
    ).toThrow('step failed');
    expect(store.gateway.fact('closed:0xab')).toBeUndefined();
    store.close();
  });
});
