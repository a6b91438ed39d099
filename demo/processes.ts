import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/picopay.js', import.meta.url));

interface Waiter {
  name: string;
  from: number;
  resolve: (e: Event) => void;
  reject: (e: Error) => void;
}

export interface Event {
  event: string;
  [field: string]: unknown;
}

/**
 * A picopay command as a separate OS process. Its stdout carries one JSON event per
 * line; `next(name)` waits for the next event of that name.
 */
export class PicopayProcess {
  readonly child: ChildProcess;
  readonly events: Event[] = [];
  #waiters: Waiter[] = [];
  #exited: Promise<number | null>;

  /**
   * `stderr`: inherited, ignored, or an open file descriptor (a log file). `entry`: another
   * script to run than `picopay` (the lean device bundle, which takes `device`'s options).
   */
  constructor(readonly name: string, args: string[], options: { env?: NodeJS.ProcessEnv; stderr?: 'inherit' | 'ignore' | number; entry?: string } = {}) {
    this.child = spawn(process.execPath, options.entry ? [options.entry, ...args] : [BIN, ...args], { stdio: ['ignore', 'pipe', options.stderr ?? 'inherit'], env: { ...process.env, ...options.env } });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let e: Event;
      try {
        e = JSON.parse(line) as Event;
      } catch {
        return;
      }
      this.events.push(e);
      for (const w of [...this.#waiters]) this.#check(w);
    });
    this.#exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    void this.#exited.then((code) => {
      for (const w of this.#waiters.splice(0)) w.reject(new Error(`${this.name} exited (code ${code}) before "${w.name}"`));
    });
  }

  #check(w: Waiter): void {
    const i = this.events.findIndex((e, idx) => idx >= w.from && e.event === w.name);
    if (i < 0) return;
    w.from = i + 1;
    this.#waiters = this.#waiters.filter((x) => x !== w);
    w.resolve(this.events[i]!);
  }

  /** The first event called `name` (already seen or still to come). */
  next(name: string, timeoutMs = 120_000): Promise<Event> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no "${name}" within ${timeoutMs} ms`)), timeoutMs);
      const w: Waiter = {
        name,
        from: 0,
        resolve: (e: Event) => {
          clearTimeout(timer);
          resolve(e);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#waiters.push(w);
      this.#check(w);
    });
  }

  exited(): Promise<number | null> {
    return this.#exited;
  }

  /** SIGTERM, then SIGKILL if it does not exit within 5 s. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(timer);
  }
}
