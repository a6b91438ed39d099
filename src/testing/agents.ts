import { mkdtempSync, rmSync } from 'node:fs';
import { afterEach } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOCAL_CHAIN } from '../chain/anvil.ts';
import { Agent, type AgentOptions } from '../client/agent.ts';
import { Signer } from '../crypto/keys.ts';
import { ChannelStore } from '../store/store.ts';
import { MemoryNetwork, type MemoryTransport } from '../transport/memory.ts';
import { decodeMessage } from '../wire/codec.ts';
import type { MessageType } from '../wire/messages.ts';

export const CHAIN = LOCAL_CHAIN;
export const FAST = { retransmitMs: 10, maxRetransmitMs: 80, requestTimeoutMs: 3000 };

const made: string[] = [];

/** Removes every folder tempDir made (test/setup.ts runs it after each test file). */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** A fresh folder under the system's temp dir, removed after the test file. */
export function tempDir(prefix = 'picopay-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** A signer that remembers every digest it signed, to check what a party ever committed to. */
export class RecordingSigner extends Signer {
  readonly signed: Uint8Array[] = [];
  override sign(digest: Uint8Array): Uint8Array {
    this.signed.push(digest.slice());
    return super.sign(digest);
  }
}

export interface Party {
  signer: RecordingSigner;
  transport: MemoryTransport;
  agent: Agent;
  store: ChannelStore;
  path: string;
}

/** Stops every party pushed onto the returned list, and closes its store, after each test. */
export function stoppedAfterEach(): Party[] {
  const live: Party[] = [];
  afterEach(() => {
    for (const p of live.splice(0)) {
      p.agent.stop();
      p.store.close();
    }
  });
  return live;
}

export function makeParty(
  network: MemoryNetwork,
  dir: string,
  name: string,
  extra: Partial<AgentOptions> = {},
  signer = new RecordingSigner(Signer.random().exportPrivateKey()),
  store?: ChannelStore,
): Party {
  const path = join(dir, `${name}.db`);
  const s = store ?? new ChannelStore(path, { durability: 'normal' });
  const transport = network.endpoint(signer.address);
  const agent = new Agent({ signer, transport, store: s, chain: CHAIN, timing: FAST, ...extra });
  agent.start();
  return { signer, transport, agent, store: s, path };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `cond` holds, checking every few ms; throws if it still does not after `ms`,
 * so that a wait that times out fails the test even where its result goes unchecked.
 */
export async function until(cond: () => boolean, ms = 5000): Promise<true> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(5);
  }
  if (cond()) return true;
  throw new Error(`condition not met within ${ms} ms: ${cond.toString().slice(0, 200)}`);
}

/** Two agents A and B on `network`, pushed onto `live` to be stopped after the test. */
export function agentPair(live: Party[], network = new MemoryNetwork(), extra: Partial<AgentOptions> = {}) {
  const dir = tempDir();
  const a = makeParty(network, dir, 'a', extra);
  const b = makeParty(network, dir, 'b', extra);
  live.push(a, b);
  return { network, a, b, dir };
}

/** Frames of `type` that `p` sends go to `into` instead of the network while `hold()` says so. */
export function intercept(p: Party, type: MessageType, into: Uint8Array[], hold: () => boolean = () => true): void {
  const send = p.transport.send.bind(p.transport);
  p.transport.send = async (to, frame) => {
    if (decodeMessage(frame).type !== type) return send(to, frame);
    into.push(frame.slice());
    if (!hold()) return send(to, frame);
  };
}
