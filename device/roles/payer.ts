import { setTimeout as delay } from 'node:timers/promises';
import type { ChannelRecord } from '../../src/channel/record.ts';
import { announce } from '../../src/cli/args.ts';
import { Progress } from '../../src/cli/progress.ts';
import { formatEth } from '../../src/cli/units.ts';
import { InsufficientFundsError, OpenRejectedError, ProtocolTimeoutError, UnfundedError } from '../../src/errors.ts';
import { type Address, ChannelKind } from '../../src/model/types.ts';
import type { Logger } from '../../src/log.ts';
import { Backoff } from '../../src/transport/backoff.ts';
import { createPayingClient, type DownloadProgress, type DownloadResult, nothingReceived } from '../hotspot/client.ts';
import { DownloadInterruptedError, HttpStatusError, TariffRefusedError } from '../hotspot/errors.ts';
import { fetchTariff } from '../hotspot/tariff.ts';
import { streamPaymentsOut } from '../payments.ts';
import type { RunningDevice } from '../service.ts';

export interface PayerOptions {
  gateway: Address;
  hotspot: Address;
  proxyUrl: string;
  url: string;
  /** What the client locks in the stream channel: the most it can pay the hotspot. */
  lock: bigint;
  /** With `price`: the most this payer pays, per this many bytes (the hotspot's signed tariff may ask less). */
  unitBytes: number;
  price: bigint;
  mode: 'forward' | 'connect';
  /** How long to wait for the ledger channel's deposits on-chain. */
  fundTimeoutMs: number;
  /** How long an interrupted download (or an unreachable hotspot) is tried again before the run gives up. */
  retryForMs: number;
  closeAfter: boolean;
  logger: Logger;
}

/** How a download goes on after the hotspot, the broker or the link went away for a while. */
const BACKOFF = { initialMs: 500, maxMs: 10_000 };

/**
 * Downloads through the hotspot, paying one unit ahead with stream vouchers in a virtual
 * channel, then settles it. A stream an earlier run left open (a crash, a kill) is gone on
 * with, from what it paid; an interrupted download goes on from the byte it reached for
 * `retryForMs`, and when it cannot, the channel is settled at its highest voucher, so
 * nothing stays locked.
 */
export async function runPayer(dev: RunningDevice, o: PayerOptions): Promise<void> {
  const { agent } = dev;
  const backoff = new Backoff(BACKOFF);
  // Tries again for retryForMs from the first failure; a download that moves on starts the clock again.
  let failingSince: number | null = null;
  const progressed = () => {
    failingSince = null;
    backoff.reset();
  };
  const retrying = async <T>(what: string, attempt: () => Promise<T>, transient: (err: unknown) => boolean): Promise<T> => {
    for (;;) {
      try {
        const result = await attempt();
        progressed();
        return result;
      } catch (err) {
        failingSince ??= Date.now();
        if (!transient(err) || Date.now() - failingSince >= o.retryForMs) throw err;
        o.logger.warn({ err: String(err) }, `${what} failed; trying again`);
        await delay(backoff.next());
      }
    }
  };
  // What the hotspot charges, signed by it, within this payer's limit: checked before anything is locked.
  const tariff = await retrying('fetching the tariff', () => fetchTariff(o.proxyUrl, o.hotspot, { maxPrice: o.price, unitBytes: o.unitBytes }), (err) => err instanceof TariffRefusedError && err.cause !== undefined);
  const needed = BigInt(tariff.prepaidUnits) * tariff.pricePerUnit;
  if (o.lock < needed) {
    throw new TariffRefusedError(`--lock ${formatEth(o.lock)} does not cover the ${tariff.prepaidUnits} unit(s) the hotspot wants paid ahead at ${formatEth(tariff.pricePerUnit)}`);
  }
  o.logger.info({ unitBytes: tariff.unitBytes, price: formatEth(tariff.pricePerUnit), prepaidUnits: tariff.prepaidUnits }, "the hotspot's signed tariff");
  await dev.untilFunded(o.fundTimeoutMs);

  const settle = (vc: ChannelRecord, why: string) =>
    agent
      .settleVirtual(vc.id)
      .then(() => dev.facts.deleteFact(`tariff:${vc.id}`))
      .catch((err) => o.logger.warn({ channel: vc.id, err: String(err) }, `settling ${why} failed; the idle sweep will ask again`));
  // The stream left open with the most left to pay from goes on; any other is settled.
  const left = (vc: ChannelRecord) => (vc.current.state.outcome.balances[0]?.[0] ?? 0n) - (vc.voucher?.cumulative ?? 0n);
  const open = agent.channelsWith(o.hotspot).filter((c) => c.params.kind === ChannelKind.Stream && c.phase === 'open' && c.idx === 0 && agent.isFunded(c.id));
  open.sort((a, b) => (left(b) > left(a) ? 1 : left(b) < left(a) ? -1 : 0));
  // Only under the tariff it was paid at: a new price would value what was served anew.
  const sameTariff = (c: ChannelRecord) => {
    const t = dev.facts.fact<{ unitBytes: number; price: string }>(`tariff:${c.id}`);
    return t?.unitBytes === tariff.unitBytes && t.price === tariff.pricePerUnit.toString();
  };
  let vc = open[0] && left(open[0]) >= needed && sameTariff(open[0]) ? open.shift()! : undefined;
  for (const other of open) {
    o.logger.info({ channel: other.id, paid: formatEth(other.voucher?.cumulative ?? 0n) }, 'settling a virtual channel an earlier run left open');
    await settle(other, 'it');
  }
  let resumed = vc !== undefined;
  if (vc) announce('resumed', { channel: vc.id, paid: vc.voucher?.cumulative ?? 0n, left: left(vc) });
  // A hotspot that refuses now (still waiting for its own deposits, restarting) or does not answer may take it later.
  const openFresh = async (): Promise<ChannelRecord> => {
    const streams = () => agent.channelsWith(o.hotspot).filter((c) => c.params.kind === ChannelKind.Stream && c.idx === 0 && c.phase === 'open' && agent.isFunded(c.id));
    const before = new Set(streams().map((c) => c.id));
    // An attempt that timed out may have opened it after all: that one is taken, not another lock.
    const open = async () => streams().find((c) => !before.has(c.id) && c.current.state.outcome.balances[0]?.[0] === o.lock) ?? agent.openVirtual(o.hotspot, { gateway: o.gateway, kind: ChannelKind.Stream, balances: [[o.lock, 0n]] });
    const fresh = await retrying('opening the virtual channel', open, (err) => err instanceof OpenRejectedError || err instanceof ProtocolTimeoutError);
    dev.facts.setFact(`tariff:${fresh.id}`, { unitBytes: tariff.unitBytes, price: tariff.pricePerUnit.toString() });
    announce('virtual', { channel: fresh.id, lock: o.lock });
    return fresh;
  };
  vc ??= await openFresh();
  const clientOn = (channel: ChannelRecord) =>
    createPayingClient({ proxyUrl: o.proxyUrl, clientAddress: dev.signer.address, channel: channel.id, unitBytes: tariff.unitBytes, price: tariff.pricePerUnit, prepaidUnits: tariff.prepaidUnits, paid: channel.voucher?.cumulative ?? 0n, payments: streamPaymentsOut(agent, channel.id, () => dev.funded), sign: (d) => dev.signer.sign(d) });
  let client = clientOn(vc);

  let bar: Progress | null = null;
  const received = nothingReceived();
  // Progress is a byte never reached before: a body served from zero again does not keep the retries going.
  let reached = 0;
  const onProgress = (p: DownloadProgress) => {
    if (p.bytes > reached) {
      reached = p.bytes;
      progressed();
    }
    if (!p.totalBytes) return;
    bar ??= new Progress('downloading', p.totalBytes);
    bar.update(p.bytes, `${(p.bytes / 1e6).toFixed(1)} MB, ${p.unitsPaid} units paid, ${p.vouchersPerSec.toFixed(0)} vouchers/s`);
  };
  let result: DownloadResult | undefined;
  while (!result) {
    try {
      result = await retrying('the download', () => client.download(o.url, { mode: o.mode, onProgress, received }), interrupted);
    } catch (err) {
      // A channel an earlier run paid from ran out: this run's own goes on from the byte reached.
      if (resumed && err instanceof InsufficientFundsError) {
        await settle(vc, 'the spent channel');
        vc = await openFresh();
        client = clientOn(vc);
        resumed = false;
        continue;
      }
      // A failed download leaves nothing locked: the channel settles at what was paid.
      await settle(vc, 'after the failed download');
      throw err;
    }
  }
  (bar as Progress | null)?.done();
  const paid = agent.channel(vc.id).voucher?.cumulative ?? 0n;
  announce('downloaded', { bytes: result.bytes, sha256: result.sha256, unitsPaid: result.unitsPaid, vouchers: result.vouchers, paid });
  o.logger.info({ bytes: result.bytes, paid: formatEth(paid) }, 'download complete');

  await agent.settleVirtual(vc.id);
  dev.facts.deleteFact(`tariff:${vc.id}`);
  announce('settled', { channel: vc.id, paid });
  if (o.closeAfter) {
    await agent.finalize(dev.ledger.id);
    announce('closed', { channel: dev.ledger.id });
  }
}

const LINK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN']);

/** What may go on: the hotspot went away, cut this payer off (its vouchers did not get through) or paused (503); the link broke; the deposits are gone for a while. */
function interrupted(err: unknown): boolean {
  if (err instanceof DownloadInterruptedError || err instanceof UnfundedError) return true;
  if (err instanceof HttpStatusError) return err.status === 402 || err.status === 502 || err.status === 503;
  return LINK_ERRORS.has((err as NodeJS.ErrnoException).code ?? '');
}
