import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command, Commands, Reply, Request } from './protocol.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const DEVICE_SCRIPT = join(HERE, 'device.ts');
const REPO_ROOT = join(HERE, '..', '..');

export interface DeviceProcessOptions {
  /** Write V8 CPU profiles (.cpuprofile) under <dir>/<name>/ when the process stops. */
  cpuProfileDir?: string;
}

/** The bench's end of a device process (bench/workers/device.ts): one command at a time or many, each answered once. */
export class DeviceProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #exited = false;

  constructor(readonly name: string, options: DeviceProcessOptions = {}) {
    // One directory per process: the tsx loader thread writes a profile of its own.
    const profile = options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', join(options.cpuProfileDir, name)] : [];
    this.#child = fork(DEVICE_SCRIPT, [], {
      // `--import tsx` resolves from the working directory: the repository's node_modules.
      cwd: REPO_ROOT,
      execArgv: ['--import', 'tsx', ...profile],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (reply: Reply) => this.#onReply(reply));
    this.#child.once('exit', (code, signal) => {
      this.#exited = true;
      const error = new Error(`${name} process exited (${signal ?? code})`);
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    });
  }

  call<C extends Command>(cmd: C, args: Commands[C][0]): Promise<Commands[C][1]> {
    if (this.#exited) return Promise.reject(new Error(`${this.name} process is gone`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const request: Request<C> = { id, cmd, args };
      this.#child.send(request);
    });
  }

  /** Asks the process to stop cleanly (so a CPU profile gets written), then kills it if it has not exited in time. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs);
    this.call('stop', {}).catch(() => this.#child.kill('SIGKILL'));
    await exited;
    clearTimeout(timer);
  }

  #onReply(reply: Reply): void {
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    this.#pending.delete(reply.id);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(new Error(`${this.name}: ${reply.error}`));
  }
}
