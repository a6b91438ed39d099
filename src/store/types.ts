import type { PendingOpen } from '../channel/open.ts';
import type { ChannelRecord } from '../channel/record.ts';
import type { Bytes32 } from '../model/types.ts';

// What each party needs of its storage, so that the agent and the gateway's duties are
// written against interfaces: the SQLite ChannelStore (store.ts) implements ChannelStorage,
// and its ServiceRecords (service.ts) the other two, which only the processes around an
// agent use (a gateway, a hotspot).

/** A proposal this side accepted: kept so a repeated proposal gets the same answer. */
export interface AcceptedOpen {
  shareA: string;
  channelId: Bytes32;
}

/** The agent's channels: live records, proposals in flight, and the archive of retired ones. */
export interface ChannelStorage {
  /** Runs `fn` as one transaction: all its writes land together or none does. */
  atomically<T>(fn: () => T): T;
  saveChannel(rec: ChannelRecord): void;
  /** Several records in one transaction; `durable: false` skips the fsync of this commit. */
  saveChannels(recs: readonly ChannelRecord[], durable: boolean): void;
  /** The live channels: what a restart resumes. */
  loadChannels(): ChannelRecord[];
  /** One channel, live or retired. */
  loadChannel(id: Bytes32): ChannelRecord | undefined;
  /** A retired channel by its wire alias (hex). */
  retiredByAlias(alias: string): ChannelRecord | undefined;
  /** Moves a channel, and the record of the proposal that opened it, to the archive. */
  retireChannel(rec: ChannelRecord, alias: string): void;
  savePendingOpen(shareHex: string, pending: PendingOpen): void;
  deletePendingOpen(shareHex: string): void;
  loadPendingOpens(): PendingOpen[];
  saveAcceptedOpen(a: AcceptedOpen): void;
  acceptedOpen(shareA: string): AcceptedOpen | undefined;
}

/** Small facts a service must remember across restarts (a deposit made, a close sent, a transaction broadcast). */
export interface FactStorage {
  setFact(key: string, value: unknown): void;
  fact<T>(key: string): T | undefined;
  /** Facts whose key starts with `prefix`, oldest key first. */
  factsWithPrefix<T>(prefix: string): { key: string; value: T }[];
  deleteFact(key: string): void;
}

/** What an intermediary keeps about the virtual channels it funded. */
export interface VirtualStorage {
  saveVirtual(id: Bytes32, info: unknown): void;
  deleteVirtual(id: Bytes32): void;
  loadVirtuals<T>(): T[];
}
