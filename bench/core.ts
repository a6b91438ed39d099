import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../src/client/agent.ts';
import { aliasOf } from '../src/channel/record.ts';
import { Signer } from '../src/crypto/keys.ts';
import { verifyDigest } from '../src/crypto/verify.ts';
import { keccak } from '../src/model/hash.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';
import { encodeMessage } from '../src/wire/codec.ts';
import { MessageType } from '../src/wire/messages.ts';
import { CHAIN, tempDir } from '../test/helpers/agents.ts';
import { printTable, writeResults } from './table.ts';

/** Milliseconds for `rounds` × (2 signatures + 2 verifications): what a ledger update cannot beat. */
function signBoundMs(rounds: number): number {
  const a = Signer.random();
  const b = Signer.random();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) {
    const digest = keccak(new Uint8Array([i & 255, i >> 8, 1]));
    const sa = a.sign(digest);
    const sb = b.sign(digest);
    if (!verifyDigest(sa, digest, a.publicKey) || !verifyDigest(sb, digest, b.publicKey)) throw new Error('bad signature');
  }
  return performance.now() - t0;
}

/**
 * Payments over the memory transport, both agents in this process, durable stores. The
 * signing bound is measured in slices between slices of payments, so that both see
 * the same machine load.
 */
async function measure(count: number): Promise<{ rate: number; bound: number; dbBytes: number }> {
  const dir = tempDir('picopay-bench-');
  const network = new MemoryNetwork();
  const sa = Signer.random();
  const sb = Signer.random();
  const storeA = new ChannelStore(join(dir, 'a.db'));
  const storeB = new ChannelStore(join(dir, 'b.db'));
  const a = new Agent({ signer: sa, transport: network.endpoint(sa.address), store: storeA, chain: CHAIN });
  const b = new Agent({ signer: sb, transport: network.endpoint(sb.address), store: storeB, chain: CHAIN });
  a.start();
  b.start();
  const ch = await a.open(sb.address, { balances: [[10n ** 18n, 10n ** 18n]] });
  for (let i = 0; i < 20; i++) await a.pay(ch.id, 1n); // warm-up
  signBoundMs(50);
  const slice = 50;
  let payMs = 0;
  let boundMs = 0;
  for (let done = 0; done < count; done += slice) {
    const t0 = performance.now();
    for (let i = 0; i < slice; i++) await a.pay(ch.id, 1_000_000_000n);
    payMs += performance.now() - t0;
    boundMs += signBoundMs(slice / 2);
  }
  const slices = Math.ceil(count / slice);
  const rate = (slices * slice) / (payMs / 1000);
  const bound = (slices * slice) / 2 / (boundMs / 1000);
  const dbBytes = storeA.sizeOnDisk();
  a.stop();
  b.stop();
  storeA.close();
  storeB.close();
  rmSync(dir, { recursive: true, force: true });
  return { rate, bound, dbBytes };
}

function messageSizes(): { updateBytes: number; updateAcceptBytes: number } {
  const alias = aliasOf(`0x${'ab'.repeat(32)}`);
  const sig = new Uint8Array(65).fill(0xee);
  // A payment deep into a channel's life: large version, 1-ETH-scale balances.
  const update = encodeMessage({
    type: MessageType.Update,
    alias,
    version: 1_000_000n,
    balances: [[987_654_321_000_000_000n, 1_012_345_679_000_000_000n]],
    locked: [],
    isFinal: false,
    sig,
  });
  const accept = encodeMessage({ type: MessageType.UpdateAccept, alias, version: 1_000_000n, sig });
  return { updateBytes: update.length, updateAcceptBytes: accept.length };
}

export async function runCoreBench(count = 1000): Promise<Record<string, number>> {
  const { rate, bound: signBound, dbBytes } = await measure(count);
  const results = {
    updates: count,
    updatesPerSec: rate,
    signBoundUpdatesPerSec: signBound,
    ratio: rate / signBound,
    ...messageSizes(),
    dbBytesAfterRun: dbBytes,
  };
  writeResults('core', results);
  printTable('Ledger-channel updates (memory transport, SQLite synchronous=FULL, both agents in one process)', ['metric', 'value', 'target'], [
    ['updatesPerSec', results.updatesPerSec, `≥ ${(0.8 * signBound).toFixed(0)} (0.8 × bound)`],
    ['signBoundUpdatesPerSec', results.signBoundUpdatesPerSec, '1 / (2 sign + 2 verify)'],
    ['ratio', results.ratio, '≥ 0.80'],
    ['updateBytes', results.updateBytes, '≤ 160 (go-perun 245)'],
    ['updateAcceptBytes', results.updateAcceptBytes, '≤ 100 (go-perun 173)'],
    ['dbBytesAfterRun', results.dbBytesAfterRun, 'bounded'],
  ]);
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) await runCoreBench(Number(process.argv[2] ?? 1000));
