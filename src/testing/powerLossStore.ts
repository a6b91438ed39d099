import { ChannelStore } from '../store/store.ts';

/**
 * A ChannelStore whose machine can lose power: commits made without fsync (the agent's
 * `durable: false`) stay in memory until the next fsynced commit carries them down, and
 * `powerLoss()` drops them and closes the file, as a power cut would. (Closing and
 * reopening a real store never loses an unsynced write.)
 */
export class PowerLossStore extends ChannelStore {
  constructor(path: string) {
    super(path, { durability: 'normal', writeBack: true });
  }
}
