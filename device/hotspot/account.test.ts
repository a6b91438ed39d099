import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { ClientAccount } from './account.ts';
import { CutOffError } from './errors.ts';
import { MemoryServedLog } from './memory-payments.ts';

const CLIENT = '0x00000000000000000000000000000000000a11ce';
const CHANNEL = `0x${'c1'.repeat(32)}`;

describe('ClientAccount', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const account = (servedLog?: MemoryServedLog) => new ClientAccount(CLIENT, CHANNEL, { unitBytes: 100, pricePerUnit: 10n }, 1_000, silentLogger, servedLog);

  it('hands out allowance in pieces and waits for the payment that buys more', async () => {
    const a = account();
    a.credit(10n);
    expect(await a.take(60)).toBe(60);
    expect(await a.take(60)).toBe(40);
    const next = a.take(60);
    a.credit(15n); // dust: buys no unit, wakes nobody
    await vi.advanceTimersByTimeAsync(500);
    a.credit(20n);
    expect(await next).toBe(60);
  });

  it('cuts the client off when no whole unit is bought within idleCutoffMs, dust or not', async () => {
    const a = account();
    const connection = { destroy: vi.fn() };
    a.attach(connection);
    const waiting = a.take(1);
    const failed = expect(waiting).rejects.toBeInstanceOf(CutOffError);
    await vi.advanceTimersByTimeAsync(900);
    a.credit(9n); // dust does not stop the clock
    await vi.advanceTimersByTimeAsync(100);
    await failed;
    expect(connection.destroy).toHaveBeenCalledOnce();
    expect(a.cutOffs).toBe(1);
    expect(a.busy).toBe(false);
  });

  it('stops the clock when the traffic that waited goes away', async () => {
    const a = account();
    const connection = { destroy: vi.fn() };
    a.attach(connection);
    const gone = new AbortController();
    const waiting = a.take(1, gone.signal);
    const aborted = expect(waiting).rejects.toThrow();
    gone.abort();
    await aborted;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(connection.destroy).not.toHaveBeenCalled();
    expect(a.cutOffs).toBe(0);
  });

  it('logs the end of each unit it starts serving, and an account made again from that log serves nothing twice', async () => {
    const log = new MemoryServedLog();
    const a = account(log);
    a.credit(30n); // three units
    expect(await a.take(30)).toBe(30);
    expect(log.served(CHANNEL)).toBe(100);
    expect(await a.take(100)).toBe(100);
    expect(log.served(CHANNEL)).toBe(200);
    // A restart: the same channel, paid the same; what was served (rounded up to its unit) is not served again.
    const again = account(log);
    again.credit(30n);
    expect(again.meter.allowance()).toBe(100);
  });
});
