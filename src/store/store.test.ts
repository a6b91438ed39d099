import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ChannelRecord } from '../channel/record.ts';
import { StoreError } from '../errors.ts';
import { ChannelKind, NATIVE_ASSET } from '../model/types.ts';
import { tempDir } from '../testing/agents.ts';
import { ChannelStore } from './store.ts';
import { deserializeRecord, serialize } from './serialize.ts';

function record(version: bigint): ChannelRecord {
  const id = `0x${'ab'.repeat(32)}` as const;
  return {
    id,
    params: { chainId: 1n, adjudicator: `0x${'22'.repeat(20)}`, participants: [`0x${'11'.repeat(20)}`, `0x${'33'.repeat(20)}`], challengeDuration: 60n, nonce: 7n, kind: ChannelKind.Ledger },
    idx: 0,
    peer: `0x${'33'.repeat(20)}`,
    peerKey: new Uint8Array(65).fill(4),
    phase: 'open',
    current: { state: { channelId: id, version, outcome: { assets: [NATIVE_ASSET], balances: [[1000n - version, version]], locked: [] }, isFinal: false }, sigs: [new Uint8Array(65), new Uint8Array(65)] },
    staged: { state: { channelId: id, version: version + 1n, outcome: { assets: [NATIVE_ASSET], balances: [[999n - version, version + 1n]], locked: [] }, isFinal: false }, sig: new Uint8Array(65) },
    highestSigned: version + 1n,
    shares: { a: new Uint8Array(32), b: new Uint8Array(32) },
  };
}

describe('ChannelStore', () => {
  it('round-trips a record exactly', () => {
    const store = new ChannelStore(':memory:');
    store.saveChannel(record(5n));
    expect(store.loadChannels()).toEqual([record(5n)]);
    store.close();
  });

  it('stays the same size over 10,000 updates of a channel', () => {
    const dir = tempDir();
    const store = new ChannelStore(join(dir, 'c.db'), { durability: 'normal' });
    store.saveChannel(record(0n));
    for (let v = 1n; v <= 100n; v++) store.saveChannel(record(v));
    const after100 = store.sizeOnDisk();
    for (let v = 101n; v <= 10_000n; v++) store.saveChannel(record(v));
    const after10k = store.sizeOnDisk();
    expect(after10k).toBeLessThanOrEqual(after100 + 4096);
    expect(statSync(join(dir, 'c.db')).size).toBe(after10k);
    expect(store.loadChannels()[0]!.current.state.version).toBe(10_000n);
    store.close();
  });

  it('retires a channel into the archive: the live file stays the size of the live channels', () => {
    const dir = tempDir();
    const store = new ChannelStore(join(dir, 'c.db'), { durability: 'normal' });
    const numbered = (n: number): ChannelRecord => ({ ...record(1n), id: `0x${n.toString(16).padStart(64, '0')}` });
    for (let n = 0; n < 200; n++) store.saveChannel(numbered(n));
    for (let n = 0; n < 200; n++) store.retireChannel(numbered(n), `alias${n}`);
    const afterFirst = store.sizeOnDisk();
    for (let n = 200; n < 2000; n++) {
      store.saveChannel(numbered(n));
      store.saveAcceptedOpen({ shareA: `share${n}`, channelId: numbered(n).id });
      store.retireChannel(numbered(n), `alias${n}`);
    }
    expect(store.sizeOnDisk()).toBeLessThanOrEqual(afterFirst + 4096);
    expect(store.sizeOnDisk('archive')).toBeGreaterThan(afterFirst);
    expect(store.loadChannels()).toEqual([]);
    expect(store.loadChannel(numbered(1500).id)).toEqual(numbered(1500));
    expect(store.retiredByAlias('alias1500')).toEqual(numbered(1500));
    expect(store.acceptedOpen('share1500')).toEqual({ shareA: 'share1500', channelId: numbered(1500).id });
    // Retiring twice (a crash between the two transactions) changes nothing.
    store.saveChannel(numbered(7));
    store.retireChannel(numbered(7), 'alias7');
    expect(store.loadChannels()).toEqual([]);
    store.close();
  });

  it('an atomic step lands whole or not at all', () => {
    const store = new ChannelStore(':memory:');
    expect(() =>
      store.atomically(() => {
        store.saveChannel(record(1n));
        throw new Error('crash in the middle');
      }),
    ).toThrow();
    expect(store.loadChannels()).toEqual([]);
    store.close();
  });

  it('refuses a corrupt record with a typed error', () => {
    expect(() => deserializeRecord('{"id": 5')).toThrow(StoreError);
    expect(() => deserializeRecord('{"id":"0x01"}')).toThrow(StoreError);
    expect(deserializeRecord(serialize(record(3n)))).toEqual(record(3n));
  });
});

describe('ChannelStore in write-back mode (power-cut tests)', () => {
  it('keeps commits without fsync in memory, read through; a power cut loses them; any fsynced write, a fact too, carries them down', () => {
    const path = join(tempDir(), 'wb.db');
    let store = new ChannelStore(path, { durability: 'normal', writeBack: true });
    store.saveChannels([record(1n)], true);
    store.saveChannels([record(2n)], false);
    expect(store.unsynced).toBe(1);
    expect(store.loadChannel(record(2n).id)?.current.state.version).toBe(2n);
    expect(store.loadChannels().map((r) => r.current.state.version)).toEqual([2n]);
    store.powerLoss();
    store = new ChannelStore(path, { durability: 'normal', writeBack: true });
    expect(store.loadChannels().map((r) => r.current.state.version)).toEqual([1n]);
    // A later fsynced write of anything takes the earlier ones down with it, as SQLite's WAL does.
    store.saveChannels([record(3n)], false);
    store.service.setFact('served:x', 1);
    expect(store.unsynced).toBe(0);
    store.powerLoss();
    store = new ChannelStore(path, { durability: 'normal', writeBack: true });
    expect(store.loadChannels().map((r) => r.current.state.version)).toEqual([3n]);
    // A clean close writes what memory holds.
    store.saveChannels([record(4n)], false);
    store.close();
    store = new ChannelStore(path);
    expect(store.loadChannels().map((r) => r.current.state.version)).toEqual([4n]);
    store.close();
  });
});
