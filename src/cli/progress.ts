/**
 * A one-line progress bar on a terminal; on a pipe or in CI, a plain line every 10 %.
 * Writes to stderr so that stdout keeps only the program's results.
 */
export class Progress {
  readonly stream: NodeJS.WriteStream;
  readonly #label: string;
  readonly #total: number;
  readonly #tty: boolean;
  readonly #started = performance.now();
  #lastDecile = -1;
  #done = 0;

  constructor(label: string, total: number, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#total = total;
    this.#tty = stream.isTTY === true;
    this.stream = stream;
  }

  /** Sets the count done; `detail` is appended (rates, amounts). */
  update(done: number, detail = ''): void {
    this.#done = done;
    const frac = this.#total > 0 ? Math.min(1, done / this.#total) : 1;
    if (this.#tty) {
      const width = 30;
      const filled = Math.round(frac * width);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      this.stream.write(`\r${this.#label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${this.#total} ${detail}\x1b[K`);
      return;
    }
    const decile = Math.floor(frac * 10);
    if (decile !== this.#lastDecile) {
      this.#lastDecile = decile;
      this.stream.write(`${this.#label} ${(frac * 100).toFixed(0)}% ${done}/${this.#total} ${detail}\n`);
    }
  }

  /** Seconds since the bar was created. */
  elapsed(): number {
    return (performance.now() - this.#started) / 1000;
  }

  done(detail = ''): void {
    this.update(this.#total > this.#done ? this.#done : this.#total, detail);
    if (this.#tty) this.stream.write('\n');
  }
}
