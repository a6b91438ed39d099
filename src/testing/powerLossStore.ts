import type { ChannelRecord } from '../channel/record.ts';
import type { Bytes32 } from '../model/types.ts';
import { ChannelStore } from '../store/store.ts';

/**
 * A ChannelStore whose machine can lose power. A commit made without fsync (the agent's
 * `durable: false`) stays in the disk's write-back cache until the next fsynced commit
 * carries it down; `powerLoss()` drops that cache and closes the file, as a power cut
 * would. (Closing and reopening a real store never loses an unsynced write.)
 */
export class PowerLossStore extends ChannelStore {
  readonly #unsynced = new Map<Bytes32, ChannelRecord>();

  constructor(path: string) {
    super(path, { durability: 'normal' });
  }

  override saveChannels(recs: readonly ChannelRecord[], durable: boolean): void {
    for (const rec of recs) this.#unsynced.set(rec.id, rec);
    if (!durable) return;
    const all = [...this.#unsynced.values()];
    this.#unsynced.clear();
    super.saveChannels(all, true);
  }

  /** How many channel records only the cache holds. */
  get unsynced(): number {
    return this.#unsynced.size;
  }

  powerLoss(): void {
    this.#unsynced.clear();
    this.close();
  }
}
