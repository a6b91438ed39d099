import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PendingOpen } from '../channel/open.ts';
import type { ChannelRecord } from '../channel/record.ts';
import type { Bytes32 } from '../model/types.ts';
import { deserialize, deserializeRecord, serialize } from './serialize.ts';
import { ServiceRecords } from './service.ts';
import type { AcceptedOpen, ChannelStorage } from './types.ts';

export interface StoreOptions {
  /**
   * 'full' (default) survives power loss: every commit is fsynced. 'normal' survives a
   * process crash only; for tests and benchmarks on throwaway data.
   */
  durability?: 'full' | 'normal';
  /**
   * For tests of power cuts, in this process or a real one killed: a commit made without
   * fsync stays in memory (as in a disk's write-back cache) until the next fsynced commit
   * carries it down, so that losing the process loses it, as a power cut would.
   */
  writeBack?: boolean;
}

export type { AcceptedOpen } from './types.ts';

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
CREATE TABLE IF NOT EXISTS accepted_opens (
  share_a TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS accepted_opens_by_channel ON accepted_opens (channel_id);
`;

/** The archive: retired channels, kept for audits and for peers that resynchronise late. */
const ARCHIVE_SCHEMA = `
CREATE TABLE IF NOT EXISTS archive.channels (
  id TEXT PRIMARY KEY,
  alias TEXT NOT NULL,
  record TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS archive.channels_by_alias ON channels (alias);
CREATE TABLE IF NOT EXISTS archive.accepted_opens (
  share_a TEXT PRIMARY KEY,
  channel_id TEXT NOT NULL
) STRICT;
`;

/**
 * Crash-safe channel storage on SQLite (WAL). One row per channel, overwritten at each
 * protocol step, so the file stays the same size over a channel's life. Each step is
 * one transaction: callers group writes with `atomically`.
 *
 * A channel that is done (closed, settled, or an open that never completed) is retired:
 * its row moves to a second file beside this one (`<path>.archive`), so the live file
 * and what a restart loads stay the size of the live channels however many have closed.
 */
export class ChannelStore implements ChannelStorage {
  readonly #db: Database.Database;
  /** What the process around the agent remembers, in this file (see ServiceRecords). */
  readonly service: ServiceRecords;
  readonly #put;
  readonly #putPending;
  readonly #deletePending;
  readonly #putAccepted;
  readonly #getAccepted;
  readonly #getLive;
  readonly #getArchived;
  readonly #getArchivedByAlias;
  readonly #archive;
  readonly #archiveAccepted;
  readonly #deleteAccepted;
  readonly #deleteLive;
  readonly #durable: boolean;
  /** With writeBack: the records committed without fsync, not yet written. */
  readonly #unsynced: Map<Bytes32, ChannelRecord> | null;
  readonly #syncOff;
  readonly #syncOn;

  constructor(readonly path: string, options: StoreOptions = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#durable = options.durability !== 'normal';
    this.#unsynced = options.writeBack ? new Map() : null;
    this.#db.pragma(`synchronous = ${this.#durable ? 'FULL' : 'NORMAL'}`);
    this.#syncOff = this.#db.prepare('PRAGMA synchronous = NORMAL');
    this.#syncOn = this.#db.prepare('PRAGMA synchronous = FULL');
    this.#db.exec(SCHEMA);
    // Created with the store, never inside a caller's transaction (a rollback would drop the tables).
    this.service = new ServiceRecords(this.#db, () => this.#flush());
    this.#db.prepare('ATTACH DATABASE ? AS archive').run(path === ':memory:' ? ':memory:' : `${path}.archive`);
    this.#db.pragma('archive.journal_mode = WAL');
    this.#db.pragma(`archive.synchronous = ${this.#durable ? 'FULL' : 'NORMAL'}`);
    this.#db.exec(ARCHIVE_SCHEMA);
    this.#put = this.#db.prepare('INSERT OR REPLACE INTO main.channels (id, peer, record) VALUES (?, ?, ?)');
    this.#putPending = this.#db.prepare('INSERT OR REPLACE INTO pending_opens (share, proposal) VALUES (?, ?)');
    this.#deletePending = this.#db.prepare('DELETE FROM pending_opens WHERE share = ?');
    this.#putAccepted = this.#db.prepare('INSERT OR REPLACE INTO main.accepted_opens (share_a, channel_id) VALUES (?, ?)');
    this.#getAccepted = this.#db.prepare(
      'SELECT share_a AS shareA, channel_id AS channelId FROM main.accepted_opens WHERE share_a = @s UNION ALL SELECT share_a, channel_id FROM archive.accepted_opens WHERE share_a = @s LIMIT 1',
    );
    this.#getLive = this.#db.prepare('SELECT record FROM main.channels WHERE id = ?');
    this.#getArchived = this.#db.prepare('SELECT record FROM archive.channels WHERE id = ?');
    this.#getArchivedByAlias = this.#db.prepare('SELECT record FROM archive.channels WHERE alias = ?');
    this.#archive = this.#db.prepare('INSERT OR REPLACE INTO archive.channels (id, alias, record) VALUES (?, ?, ?)');
    this.#archiveAccepted = this.#db.prepare('INSERT OR REPLACE INTO archive.accepted_opens SELECT * FROM main.accepted_opens WHERE channel_id = ?');
    this.#deleteAccepted = this.#db.prepare('DELETE FROM main.accepted_opens WHERE channel_id = ?');
    this.#deleteLive = this.#db.prepare('DELETE FROM main.channels WHERE id = ?');
  }

  /** Runs `fn` as one transaction: all its writes land together or none does. */
  atomically<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  saveChannel(rec: ChannelRecord): void {
    if (this.#unsynced) {
      this.#unsynced.set(rec.id, rec);
      return this.#flush();
    }
    this.#put.run(rec.id, rec.peer, serialize(rec));
  }

  /**
   * With writeBack: what the cache holds goes down with the next fsynced write, as SQLite's
   * WAL carries every earlier commit down with a FULL one. Cleared once written.
   */
  #flush(): void {
    if (!this.#unsynced?.size) return;
    const recs = [...this.#unsynced.values()];
    this.atomically(() => recs.forEach((r) => this.#put.run(r.id, r.peer, serialize(r))));
    for (const r of recs) if (this.#unsynced.get(r.id) === r) this.#unsynced.delete(r.id);
  }

  /**
   * Several records in one transaction. `durable: false` skips the fsync of this commit:
   * for writes whose loss cannot cost this party anything (a later durable commit, or a
   * resync with the peer, brings them back); they still survive a crash of the process.
   */
  saveChannels(recs: readonly ChannelRecord[], durable: boolean): void {
    if (this.#unsynced) {
      for (const rec of recs) this.#unsynced.set(rec.id, rec);
      if (durable) this.#flush();
      return;
    }
    const write = (): void => this.atomically(() => recs.forEach((r) => this.saveChannel(r)));
    if (durable || !this.#durable) return write();
    this.#syncOff.run();
    try {
      write();
    } finally {
      this.#syncOn.run();
    }
  }

  /** With writeBack: how many channel records only memory holds. */
  get unsynced(): number {
    return this.#unsynced?.size ?? 0;
  }

  /** With writeBack: the machine loses power. What was not fsynced is gone, and the file is closed. */
  powerLoss(): void {
    this.#unsynced?.clear();
    if (this.#db.open) this.#db.close();
  }

  /** The live channels: what a restart resumes. */
  loadChannels(): ChannelRecord[] {
    const live = this.#db
      .prepare('SELECT record FROM main.channels ORDER BY id')
      .all()
      .map((row) => deserializeRecord((row as { record: string }).record));
    if (!this.#unsynced?.size) return live;
    // Read through the write-back cache, as the OS would.
    const all = new Map(live.map((rec) => [rec.id, rec]));
    for (const [id, rec] of this.#unsynced) all.set(id, rec);
    return [...all.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** One channel, live or retired. */
  loadChannel(id: Bytes32): ChannelRecord | undefined {
    const cached = this.#unsynced?.get(id);
    if (cached) return cached;
    const row = (this.#getLive.get(id) ?? this.#getArchived.get(id)) as { record: string } | undefined;
    return row ? deserializeRecord(row.record) : undefined;
  }

  /** A retired channel by its wire alias (hex), for a peer that resynchronises after it closed. */
  retiredByAlias(alias: string): ChannelRecord | undefined {
    const row = this.#getArchivedByAlias.get(alias) as { record: string } | undefined;
    return row ? deserializeRecord(row.record) : undefined;
  }

  /**
   * Moves a channel, and the record of the proposal that opened it, to the archive. Two
   * transactions, archive first: WAL makes none atomic across the two files, and a crash
   * between them leaves the channel in both, which retiring again resolves.
   */
  retireChannel(rec: ChannelRecord, alias: string): void {
    this.#flush();
    this.#unsynced?.delete(rec.id);
    this.atomically(() => {
      this.#archive.run(rec.id, alias, serialize(rec));
      this.#archiveAccepted.run(rec.id);
    });
    this.atomically(() => {
      this.#deleteAccepted.run(rec.id);
      this.#deleteLive.run(rec.id);
    });
  }

  savePendingOpen(shareHex: string, pending: PendingOpen): void {
    this.#flush();
    this.#putPending.run(shareHex, serialize(pending));
  }

  deletePendingOpen(shareHex: string): void {
    this.#flush();
    this.#deletePending.run(shareHex);
  }

  loadPendingOpens(): PendingOpen[] {
    return this.#db
      .prepare('SELECT proposal FROM pending_opens')
      .all()
      .map((row) => deserialize<PendingOpen>((row as { proposal: string }).proposal, 'open proposal'));
  }

  saveAcceptedOpen(a: AcceptedOpen): void {
    this.#flush();
    this.#putAccepted.run(a.shareA, a.channelId);
  }

  acceptedOpen(shareA: string): AcceptedOpen | undefined {
    return this.#getAccepted.get({ s: shareA }) as AcceptedOpen | undefined;
  }

  /** The live file's size in bytes (`'archive'`: the archive's), after a checkpoint. */
  sizeOnDisk(schema: 'main' | 'archive' = 'main'): number {
    this.#db.pragma(`${schema}.wal_checkpoint(TRUNCATE)`);
    const pages = this.#db.pragma(`${schema}.page_count`, { simple: true }) as number;
    const pageSize = this.#db.pragma(`${schema}.page_size`, { simple: true }) as number;
    return pages * pageSize;
  }

  /** Closes the file; with writeBack, what memory holds is written first (a clean shutdown). */
  close(): void {
    if (!this.#db.open) return;
    this.#flush();
    this.#db.close();
  }
}
