import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PendingOpen } from '../channel/open.ts';
import type { ChannelRecord } from '../channel/record.ts';
import type { Bytes32 } from '../model/types.ts';
import { deserialize, deserializeRecord, serialize } from './serialize.ts';

export interface StoreOptions {
  /**
   * 'full' (default) survives power loss: every commit is fsynced. 'normal' survives a
   * process crash only; for tests and benchmarks on throwaway data.
   */
  durability?: 'full' | 'normal';
}

/** A proposal this side accepted: kept so a repeated proposal gets the same answer. */
export interface AcceptedOpen {
  shareA: string;
  channelId: Bytes32;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS channels (
  id TEXT PRIMARY KEY,
  peer TEXT NOT NULL,
  record TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS pending_opens (
  share TEXT PRIMARY KEY,
  proposal TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS facts (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS virtual_channels (
  id TEXT PRIMARY KEY,
  info TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS accepted_opens (
  share_a TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL
) STRICT;
`;

/**
 * Crash-safe channel storage on SQLite (WAL). One row per channel, overwritten at each
 * protocol step, so the file stays the same size over a channel's life. Each step is
 * one transaction: callers group writes with `atomically`.
 */
export class ChannelStore {
  readonly #db: Database.Database;
  readonly #put;
  readonly #putPending;
  readonly #deletePending;
  readonly #putAccepted;
  readonly #getAccepted;
  readonly #durable: boolean;
  readonly #syncOff;
  readonly #syncOn;

  constructor(readonly path: string, options: StoreOptions = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#durable = options.durability !== 'normal';
    this.#db.pragma(`synchronous = ${this.#durable ? 'FULL' : 'NORMAL'}`);
    this.#syncOff = this.#db.prepare('PRAGMA synchronous = NORMAL');
    this.#syncOn = this.#db.prepare('PRAGMA synchronous = FULL');
    this.#db.exec(SCHEMA);
    this.#put = this.#db.prepare('INSERT OR REPLACE INTO channels (id, peer, record) VALUES (?, ?, ?)');
    this.#putPending = this.#db.prepare('INSERT OR REPLACE INTO pending_opens (share, proposal) VALUES (?, ?)');
    this.#deletePending = this.#db.prepare('DELETE FROM pending_opens WHERE share = ?');
    this.#putAccepted = this.#db.prepare('INSERT OR REPLACE INTO accepted_opens (share_a, channel_id) VALUES (?, ?)');
    this.#getAccepted = this.#db.prepare('SELECT share_a AS shareA, channel_id AS channelId FROM accepted_opens WHERE share_a = ?');
  }

  /** Runs `fn` as one transaction: all its writes land together or none does. */
  atomically<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  saveChannel(rec: ChannelRecord): void {
    this.#put.run(rec.id, rec.peer, serialize(rec));
  }

  /**
   * Several records in one transaction. `durable: false` skips the fsync of this commit:
   * for writes whose loss cannot cost this party anything (a later durable commit, or a
   * resync with the peer, brings them back); they still survive a crash of the process.
   */
  saveChannels(recs: readonly ChannelRecord[], durable: boolean): void {
    const write = (): void => this.atomically(() => recs.forEach((r) => this.saveChannel(r)));
    if (durable || !this.#durable) return write();
    this.#syncOff.run();
    try {
      write();
    } finally {
      this.#syncOn.run();
    }
  }

  loadChannels(): ChannelRecord[] {
    return this.#db
      .prepare('SELECT record FROM channels ORDER BY id')
      .all()
      .map((row) => deserializeRecord((row as { record: string }).record));
  }

  savePendingOpen(shareHex: string, pending: PendingOpen): void {
    this.#putPending.run(shareHex, serialize(pending));
  }

  deletePendingOpen(shareHex: string): void {
    this.#deletePending.run(shareHex);
  }

  loadPendingOpens(): PendingOpen[] {
    return this.#db
      .prepare('SELECT proposal FROM pending_opens')
      .all()
      .map((row) => deserialize<PendingOpen>((row as { proposal: string }).proposal, 'open proposal'));
  }

  saveAcceptedOpen(a: AcceptedOpen): void {
    this.#putAccepted.run(a.shareA, a.channelId);
  }

  acceptedOpen(shareA: string): AcceptedOpen | undefined {
    return this.#getAccepted.get(shareA) as AcceptedOpen | undefined;
  }

  /** A small fact a service must remember across restarts (a deposit made, a close sent). */
  setFact(key: string, value: unknown): void {
    this.#db.prepare('INSERT OR REPLACE INTO facts (key, value) VALUES (?, ?)').run(key, serialize(value));
  }

  fact<T>(key: string): T | undefined {
    const row = this.#db.prepare('SELECT value FROM facts WHERE key = ?').get(key) as { value: string } | undefined;
    return row ? deserialize<T>(row.value, `fact ${key}`) : undefined;
  }

  /** Facts whose key starts with `prefix`, oldest key first. */
  factsWithPrefix<T>(prefix: string): { key: string; value: T }[] {
    return (this.#db.prepare('SELECT key, value FROM facts WHERE key >= ? AND key < ? ORDER BY key').all(prefix, `${prefix}\uffff`) as { key: string; value: string }[]).map((r) => ({
      key: r.key,
      value: deserialize<T>(r.value, `fact ${r.key}`),
    }));
  }

  deleteFact(key: string): void {
    this.#db.prepare('DELETE FROM facts WHERE key = ?').run(key);
  }

  /** What an intermediary keeps about a virtual channel it funded, to release it later. */
  saveVirtual(id: Bytes32, info: unknown): void {
    this.#db.prepare('INSERT OR REPLACE INTO virtual_channels (id, info) VALUES (?, ?)').run(id, serialize(info));
  }

  deleteVirtual(id: Bytes32): void {
    this.#db.prepare('DELETE FROM virtual_channels WHERE id = ?').run(id);
  }

  loadVirtuals<T>(): T[] {
    return this.#db
      .prepare('SELECT info FROM virtual_channels')
      .all()
      .map((row) => deserialize<T>((row as { info: string }).info, 'virtual channel'));
  }

  /** Database plus WAL size in bytes, after a checkpoint. */
  sizeOnDisk(): number {
    this.#db.pragma('wal_checkpoint(TRUNCATE)');
    const pages = this.#db.pragma('page_count', { simple: true }) as number;
    const pageSize = this.#db.pragma('page_size', { simple: true }) as number;
    return pages * pageSize;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
