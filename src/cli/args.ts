import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, type StoreError } from '../errors.ts';
import type { Logger } from '../log.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  help: string;
  default?: string | boolean;
  /** Placeholder shown in --help. */
  arg?: string;
}

export type Specs = Record<string, OptionSpec>;
export type Values<S extends Specs> = { [K in keyof S]: S[K]['type'] extends 'boolean' ? boolean : string | undefined };

/** Usage text from a command's option table. */
export function usage(command: string, summary: string, specs: Specs, examples: string[] = []): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const left = `  --${name}${s.type === 'string' ? ` ${s.arg ?? 'VALUE'}` : ''}`;
    const def = s.default !== undefined && s.default !== false ? ` (default: ${s.default})` : '';
    return `${left.padEnd(34)} ${s.help}${def}`;
  });
  const ex = examples.length ? `\n\nExamples:\n${examples.map((e) => `  ${e}`).join('\n')}` : '';
  return `Usage: picopay ${command} [options]\n\n${summary}\n\nOptions:\n${rows.join('\n')}\n  --config FILE                      read options from a JSON file (flags win)\n  --help                             show this help${ex}\n`;
}

/**
 * Flags, then a JSON config file (--config), then defaults. Unknown flags are an error,
 * so a typo never silently falls back to a default.
 */
export function parseOptions<S extends Specs>(argv: string[], specs: S): Values<S> & { help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        ...Object.fromEntries(Object.entries(specs).map(([k, s]) => [k, { type: s.type }])),
        config: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (cause) {
    throw new ConfigError((cause as Error).message, { cause });
  }
  const flags = parsed.values as Record<string, string | boolean | undefined>;
  let file: Record<string, unknown> = {};
  if (typeof flags.config === 'string') {
    try {
      file = JSON.parse(readFileSync(flags.config, 'utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw new ConfigError(`cannot read config file ${flags.config}`, { cause });
    }
  }
  const out: Record<string, unknown> = { help: flags.help === true };
  for (const [name, spec] of Object.entries(specs)) {
    const fromFile = file[name];
    if (fromFile !== undefined && typeof fromFile !== (spec.type === 'boolean' ? 'boolean' : 'string') && typeof fromFile !== 'number') {
      throw new ConfigError(`config ${name}: expected a ${spec.type}`);
    }
    out[name] = flags[name] ?? (fromFile === undefined ? undefined : spec.type === 'string' ? String(fromFile) : fromFile) ?? spec.default ?? (spec.type === 'boolean' ? false : undefined);
  }
  return out as Values<S> & { help: boolean };
}

export function required(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw new ConfigError(`--${name} is required (see --help)`);
  return value;
}

export function integer(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`--${name}: expected a whole number, got "${value}"`);
  return n;
}

export function address(value: string | undefined, name: string): `0x${string}` {
  const v = required(value, name).toLowerCase();
  if (!/^0x[0-9a-f]{40}$/.test(v)) throw new ConfigError(`--${name}: expected a 0x address, got "${value}"`);
  return v as `0x${string}`;
}

/** One JSON line on stdout: how a parent process (or a person) learns what this one did. */
export function announce(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields }, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/**
 * What a process does when its agent's store refuses a write (the agent has stopped):
 * exit, so that a supervisor restarts it from the store.
 */
export function exitOnStoreFailure(logger: Logger): (err: StoreError) => void {
  return (err) => {
    logger.fatal({ err: String(err.cause ?? err) }, 'store write failed: exiting, a restart resumes from the store');
    process.exit(1);
  };
}
