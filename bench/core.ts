import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../src/client/agent.ts';
import { aliasOf } from '../src/channel/record.ts';
import { Signer } from '../src/crypto/keys.ts';
import { verifyDigest } from '../src/crypto/verify.ts';
import { keccak } from '../src/model/hash.ts';
import type { Bytes32 } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';
import { encodeMessage } from '../src/wire/codec.ts';
import { MessageType } from '../src/wire/messages.ts';
import { CHAIN, tempDir } from '../src/testing/agents.ts';
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
 * Payments over the memory transport, both agents in this process, durable stores, on
 * `channels` channels at once (each with one update in flight, as the protocol allows).
 * The signing bound is measured in slices between slices of payments, so that both see
 * the same machine load.
 */
async function measure(count: number, channels: number): Promise<{ rate: number; bound: number; dbBytes: number }> {
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
  const ids: Bytes32[] = [];
  for (let c = 0; c < channels; c++) ids.push((await a.open(sb.address, { balances: [[10n ** 18n, 10n ** 18n]] })).id);
  const payAll = (perChannel: number, amount: bigint) =>
    Promise.all(ids.map(async (id) => {
      for (let i = 0; i < perChannel; i++) await a.pay(id, amount);
    }));
  await payAll(Math.ceil(20 / channels), 1n); // warm-up
  signBoundMs(50);
  const slice = 50;
  const perChannel = Math.max(1, Math.round(slice / channels));
  let payMs = 0;
  let boundMs = 0;
  let done = 0;
  while (done < count) {
    const t0 = performance.now();
    await payAll(perChannel, 1_000_000_000n);
    payMs += performance.now() - t0;
    done += perChannel * channels;
    boundMs += signBoundMs((perChannel * channels) / 2);
  }
  const rate = done / (payMs / 1000);
  const bound = done / 2 / (boundMs / 1000);
  const dbBytes = storeA.sizeOnDisk();
  a.stop();
  b.stop();
  storeA.close();
  storeB.close();
  rmSync(dir, { recursive: true, force: true });
  return { rate, bound, dbBytes };
}

/** A payment deep into a channel's life (large version, 1-ETH-scale balances) and its acceptance, encoded. */
export function sampleUpdate(): { update: Uint8Array; accept: Uint8Array } {
  const alias = aliasOf(`0x${'ab'.repeat(32)}`);
  const sig = new Uint8Array(65).fill(0xee);
  const update = encodeMessage({
    type: MessageType.Update,
    alias,
    version: 1_000_000n,
    balances: [[987_654_321_000_000_000n, 1_012_345_679_000_000_000n]],
    locked: [],
    isFinal: false,
    sig,
  });
  return { update, accept: encodeMessage({ type: MessageType.UpdateAccept, alias, version: 1_000_000n, sig }) };
}

function messageSizes(): { updateBytes: number; updateAcceptBytes: number } {
  const { update, accept } = sampleUpdate();
  return { updateBytes: update.length, updateAcceptBytes: accept.length };
}

/** Channels updated at once for `updatesPerSec`: a gateway serves many devices, and their steps share an fsync. */
const CONCURRENT_CHANNELS = 8;

export async function runCoreBench(count = 1000): Promise<Record<string, number>> {
  const many = await measure(count, CONCURRENT_CHANNELS);
  const one = await measure(count / 2, 1);
  const results = {
    updates: count,
    channels: CONCURRENT_CHANNELS,
    updatesPerSec: many.rate,
    signBoundUpdatesPerSec: many.bound,
    ratio: many.rate / many.bound,
    oneChannelUpdatesPerSec: one.rate,
    oneChannelRatio: one.rate / one.bound,
    ...messageSizes(),
    dbBytesAfterRun: many.dbBytes,
  };
  writeResults('core', results);
  printTable('Ledger-channel updates (memory transport, SQLite synchronous=FULL, both agents in one process)', ['metric', 'value', 'target'], [
    [`updatesPerSec (${CONCURRENT_CHANNELS} channels at once)`, results.updatesPerSec, `≥ ${(0.8 * many.bound).toFixed(0)} (0.8 × bound)`],
    ['signBoundUpdatesPerSec', results.signBoundUpdatesPerSec, '1 / (2 sign + 2 verify)'],
    ['ratio', results.ratio, '≥ 0.80'],
    ['oneChannelUpdatesPerSec', results.oneChannelUpdatesPerSec, 'one channel: two fsyncs per update in sequence'],
    ['oneChannelRatio', results.oneChannelRatio, ''],
    ['updateBytes', results.updateBytes, '≤ 160 (go-perun 245)'],
    ['updateAcceptBytes', results.updateAcceptBytes, '≤ 100 (go-perun 173)'],
    ['dbBytesAfterRun', results.dbBytesAfterRun, 'bounded'],
  ]);
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) await runCoreBench(Number(process.argv[2] ?? 1000));
