import type Database from 'better-sqlite3';
import type { Bytes32 } from '../model/types.ts';
import { deserialize, serialize } from './serialize.ts';
import type { FactStorage, VirtualStorage } from './types.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS facts (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS virtual_channels (
  id TEXT PRIMARY KEY,
  info TEXT NOT NULL
) STRICT;
`;

/**
 * What the process around an agent remembers, in the file of its channels
 * (ChannelStore.service), so that one transaction can span both: facts (the gateway's
 * chain duties, a deposit made, a close sent, a transaction broadcast; a hotspot's bytes
 * served per channel) and what a gateway's intermediary keeps about each virtual channel
 * it funded.
 */
export class ServiceRecords implements FactStorage, VirtualStorage {
  readonly #setFact;
  readonly #getFact;
  readonly #factsFrom;
  readonly #deleteFact;
  readonly #putVirtual;
  readonly #deleteVirtual;
  readonly #allVirtuals;

  /** `beforeWrite`: called before each write, which is fsynced (the store's write-back cache goes down first). */
  constructor(db: Database.Database, private readonly beforeWrite: () => void = () => {}) {
    db.exec(SCHEMA);
    this.#setFact = db.prepare('INSERT OR REPLACE INTO facts (key, value) VALUES (?, ?)');
    this.#getFact = db.prepare('SELECT value FROM facts WHERE key = ?');
    this.#factsFrom = db.prepare('SELECT key, value FROM facts WHERE key >= ? AND key < ? ORDER BY key');
    this.#deleteFact = db.prepare('DELETE FROM facts WHERE key = ?');
    this.#putVirtual = db.prepare('INSERT OR REPLACE INTO virtual_channels (id, info) VALUES (?, ?)');
    this.#deleteVirtual = db.prepare('DELETE FROM virtual_channels WHERE id = ?');
    this.#allVirtuals = db.prepare('SELECT info FROM virtual_channels');
  }

  setFact(key: string, value: unknown): void {
    this.beforeWrite();
    this.#setFact.run(key, serialize(value));
  }

  fact<T>(key: string): T | undefined {
    const row = this.#getFact.get(key) as { value: string } | undefined;
    return row ? deserialize<T>(row.value, `fact ${key}`) : undefined;
  }

  factsWithPrefix<T>(prefix: string): { key: string; value: T }[] {
    return (this.#factsFrom.all(prefix, `${prefix}\uffff`) as { key: string; value: string }[]).map((r) => ({
      key: r.key,
      value: deserialize<T>(r.value, `fact ${r.key}`),
    }));
  }

  deleteFact(key: string): void {
    this.beforeWrite();
    this.#deleteFact.run(key);
  }

  saveVirtual(id: Bytes32, info: unknown): void {
    this.beforeWrite();
    this.#putVirtual.run(id, serialize(info));
  }

  deleteVirtual(id: Bytes32): void {
    this.beforeWrite();
    this.#deleteVirtual.run(id);
  }

  loadVirtuals<T>(): T[] {
    return this.#allVirtuals.all().map((row) => deserialize<T>((row as { info: string }).info, 'virtual channel'));
  }
}
