import { aliasKey, aliasOf, type ChannelRecord } from '../channel/record.ts';
import type { Address, Bytes32 } from '../model/types.ts';

/**
 * The live channels of an agent, found by id, by wire alias and by peer: no lookup scans
 * them all. A retired channel leaves it (the store's archive keeps the record).
 */
export class Registry<R extends { rec: ChannelRecord }> {
  readonly #byId = new Map<Bytes32, R>();
  readonly #byAlias = new Map<string, R>();
  readonly #byPeer = new Map<Address, Set<R>>();

  get size(): number {
    return this.#byId.size;
  }

  add(r: R): void {
    this.#byId.set(r.rec.id, r);
    this.#byAlias.set(aliasKey(aliasOf(r.rec.id)), r);
    let mine = this.#byPeer.get(r.rec.peer);
    if (!mine) this.#byPeer.set(r.rec.peer, (mine = new Set()));
    mine.add(r);
  }

  /** Removes `r`; false if it is not the one registered under its id. */
  remove(r: R): boolean {
    if (this.#byId.get(r.rec.id) !== r) return false;
    this.#byId.delete(r.rec.id);
    this.#byAlias.delete(aliasKey(aliasOf(r.rec.id)));
    const mine = this.#byPeer.get(r.rec.peer)!;
    mine.delete(r);
    if (mine.size === 0) this.#byPeer.delete(r.rec.peer);
    return true;
  }

  get(id: Bytes32): R | undefined {
    return this.#byId.get(id);
  }

  has(id: Bytes32): boolean {
    return this.#byId.has(id);
  }

  byAlias(alias: Uint8Array): R | undefined {
    return this.#byAlias.get(aliasKey(alias));
  }

  /** The live channels with `peer` (a copy: callers may retire while they iterate). */
  withPeer(peer: Address): R[] {
    return [...(this.#byPeer.get(peer.toLowerCase() as Address) ?? [])];
  }

  /** Every live channel (a copy, as withPeer). */
  all(): R[] {
    return [...this.#byId.values()];
  }
}
