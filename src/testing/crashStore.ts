import { ChannelStore } from '../store/store.ts';

/**
 * A ChannelStore that dies at a chosen persistence point, as the process would: in
 * 'before' mode that write never lands, in 'after' mode it lands and nothing after it
 * does. `onCrash` runs at that moment (the test cuts the party off the network).
 */
export class CrashingStore extends ChannelStore {
  points = 0;
  crashed = false;
  #depth = 0;

  constructor(
    path: string,
    private crashAt: number,
    private mode: 'before' | 'after',
    private readonly onCrash: () => void,
  ) {
    super(path, { durability: 'normal' });
  }

  #point<T>(write: () => T): T | undefined {
    if (this.crashed) return undefined;
    if (this.#depth > 0) return write();
    const n = ++this.points;
    if (n === this.crashAt && this.mode === 'before') return this.#die();
    this.#depth++;
    try {
      return write();
    } finally {
      this.#depth--;
      if (n === this.crashAt) this.#die();
    }
  }

  /** Dies at the `n`-th persistence point from now. */
  arm(n: number, mode: 'before' | 'after' = this.mode): void {
    this.crashAt = this.points + n;
    this.mode = mode;
  }

  #die(): undefined {
    this.crashed = true;
    this.onCrash();
    return undefined;
  }

  override atomically<T>(fn: () => T): T {
    return this.#point(() => super.atomically(fn)) as T;
  }
  override saveChannel(...args: Parameters<ChannelStore['saveChannel']>): void {
    this.#point(() => super.saveChannel(...args));
  }
  override savePendingOpen(...args: Parameters<ChannelStore['savePendingOpen']>): void {
    this.#point(() => super.savePendingOpen(...args));
  }
  override deletePendingOpen(...args: Parameters<ChannelStore['deletePendingOpen']>): void {
    this.#point(() => super.deletePendingOpen(...args));
  }
  override saveAcceptedOpen(...args: Parameters<ChannelStore['saveAcceptedOpen']>): void {
    this.#point(() => super.saveAcceptedOpen(...args));
  }
}
