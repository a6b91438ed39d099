import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../src/client/agent.ts';
import { Signer } from '../src/crypto/keys.ts';
import type { Bytes32 } from '../src/model/types.ts';
import { ChannelStore } from '../src/store/store.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';
import { CHAIN, tempDir } from '../src/testing/agents.ts';
import { printTable, writeResults } from './table.ts';

// What a party holds per channel, live and closed: two agents in this process over the
// memory transport, with SQLite stores. `live` channels stay open throughout while
// `closed` more are opened, paid once, finalized and retired, `CONCURRENCY` at a time.
// Heap (after a full GC) and the live store file must grow with the live channels only;
// closed ones cost only archive bytes. Run with `npm run bench:scale` (node --expose-gc).

const CONCURRENCY = 32;

interface Sample {
  closed: number;
  heapBytes: number;
  storeBytes: number;
  archiveBytes: number;
  liveInMemory: number;
}

function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc (npm run bench:scale)');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

export async function runScaleBench(live = 2000, closed = 100_000): Promise<Record<string, unknown>> {
  const dir = tempDir('picopay-scale-');
  const network = new MemoryNetwork();
  const [sa, sb] = [Signer.random(), Signer.random()];
  // Throwaway data: commits skip the fsync, which changes no size.
  const [storeA, storeB] = [new ChannelStore(join(dir, 'a.db'), { durability: 'normal' }), new ChannelStore(join(dir, 'b.db'), { durability: 'normal' })];
  const a = new Agent({ signer: sa, transport: network.endpoint(sa.address), store: storeA, chain: CHAIN });
  const b = new Agent({ signer: sb, transport: network.endpoint(sb.address), store: storeB, chain: CHAIN });
  // The peer retires a channel once it holds the final state, as the gateway does after its close lands.
  b.on('final', (rec) => b.retire(rec.id));
  a.start();
  b.start();
  const sample = (n: number): Sample => ({
    closed: n,
    heapBytes: heapUsed(),
    storeBytes: storeA.sizeOnDisk() + storeB.sizeOnDisk(),
    archiveBytes: storeA.sizeOnDisk('archive') + storeB.sizeOnDisk('archive'),
    liveInMemory: a.channels().length + b.channels().length,
  });
  const inParallel = async (count: number, job: () => Promise<void>): Promise<void> => {
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < count) await job();
    }));
  };
  const openOne = async (): Promise<Bytes32> => (await a.open(sb.address, { balances: [[1000n, 1000n]] })).id;

  // Warm up every code path once, so the baseline holds what a running process holds.
  await inParallel(CONCURRENCY, async () => {
    const id = await openOne();
    await a.finalize(id);
    a.retire(id);
  });
  const empty = sample(0);
  await inParallel(live, async () => void (await openOne()));
  const withLive = sample(0);

  const t0 = performance.now();
  const samples: Sample[] = [withLive];
  const step = Math.max(1, Math.floor(closed / 10));
  let done = 0;
  while (done < closed) {
    const batch = Math.min(step, closed - done);
    await inParallel(batch, async () => {
      const id = await openOne();
      await a.pay(id, 1n);
      await a.finalize(id);
      a.retire(id);
    });
    await network.idle();
    done += batch;
    samples.push(sample(done));
    process.stderr.write(`\r${done.toLocaleString('en-US')} of ${closed.toLocaleString('en-US')} channels opened and closed`);
  }
  process.stderr.write('\n');
  const seconds = (performance.now() - t0) / 1000;
  a.stop();
  b.stop();
  const files = { a: statSync(join(dir, 'a.db')).size, aArchive: statSync(join(dir, 'a.db.archive')).size };
  storeA.close();
  storeB.close();

  // Two records per channel: one at each party. What a closed channel costs is the slope
  // from the first checkpoint on: the first batch also fills caches that stay the same size.
  const perLive = { heapBytes: (withLive.heapBytes - empty.heapBytes) / (2 * live), storeBytes: (withLive.storeBytes - empty.storeBytes) / (2 * live) };
  const [first, last] = [samples[1] ?? withLive, samples.at(-1)!];
  const slope = (key: 'heapBytes' | 'storeBytes' | 'archiveBytes'): number => (last.closed > first.closed ? (last[key] - first[key]) / (2 * (last.closed - first.closed)) : 0);
  const perClosed = { heapBytes: slope('heapBytes'), storeBytes: slope('storeBytes'), archiveBytes: slope('archiveBytes') };
  printTable(
    `Memory and store over ${closed.toLocaleString('en-US')} channels opened and closed beside ${live.toLocaleString('en-US')} live (two parties)`,
    ['closed', 'heap MB', 'live store KB', 'archive KB', 'channels in memory'],
    samples.map((s) => [s.closed, s.heapBytes / 2 ** 20, s.storeBytes / 1024, s.archiveBytes / 1024, s.liveInMemory]),
  );
  printTable('Per channel, per party', ['', 'heap bytes', 'live store bytes', 'archive bytes'], [
    ['live channel', perLive.heapBytes, perLive.storeBytes, 0],
    ['closed channel', perClosed.heapBytes, perClosed.storeBytes, perClosed.archiveBytes],
  ]);
  const results = {
    live,
    closed,
    seconds,
    channelsPerSecond: closed / seconds,
    perLive,
    perClosed,
    // What a closed channel costs in memory and in the live store, as a share of a live one (target ≈ 0).
    closedOverLive: { heap: perClosed.heapBytes / perLive.heapBytes, store: perClosed.storeBytes / perLive.storeBytes },
    files,
    samples,
  };
  console.log(`results: ${writeResults('scale', results)}`);
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runScaleBench(Number(process.env.PICOPAY_BENCH_LIVE ?? 2000), Number(process.env.PICOPAY_BENCH_CLOSED ?? 100_000));
  process.exit(0);
}
