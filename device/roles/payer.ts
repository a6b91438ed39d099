import { announce } from '../../src/cli/args.ts';
import { Progress } from '../../src/cli/progress.ts';
import { formatEth } from '../../src/cli/units.ts';
import { type Address, ChannelKind } from '../../src/model/types.ts';
import type { Logger } from '../../src/log.ts';
import { createPayingClient } from '../hotspot/client.ts';
import { TariffRefusedError } from '../hotspot/errors.ts';
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
  closeAfter: boolean;
  logger: Logger;
}

/**
 * Downloads through the hotspot, paying one unit ahead with stream vouchers in a virtual
 * channel of its own, then settles it, whether the download succeeded or not. A channel
 * left open by an earlier run (a crash, a kill) is settled first, at what its vouchers
 * say: each run pays from a fresh channel, which the hotspot meters from zero.
 */
export async function runPayer(dev: RunningDevice, o: PayerOptions): Promise<void> {
  const { agent } = dev;
  // What the hotspot charges, signed by it, within this payer's limit: checked before anything is locked.
  const tariff = await fetchTariff(o.proxyUrl, o.hotspot, { maxPrice: o.price, unitBytes: o.unitBytes });
  if (o.lock < BigInt(tariff.prepaidUnits) * tariff.pricePerUnit) {
    throw new TariffRefusedError(`--lock ${formatEth(o.lock)} does not cover the ${tariff.prepaidUnits} unit(s) the hotspot wants paid ahead at ${formatEth(tariff.pricePerUnit)}`);
  }
  o.logger.info({ unitBytes: tariff.unitBytes, price: formatEth(tariff.pricePerUnit), prepaidUnits: tariff.prepaidUnits }, "the hotspot's signed tariff");
  await dev.untilFunded(o.fundTimeoutMs);
  for (const left of agent.channelsWith(o.hotspot).filter((c) => c.params.kind === ChannelKind.Stream && c.phase === 'open' && c.idx === 0)) {
    o.logger.info({ channel: left.id, paid: formatEth(left.voucher?.cumulative ?? 0n) }, 'settling a virtual channel an earlier run left open');
    await agent.settleVirtual(left.id).catch((err) => o.logger.warn({ channel: left.id, err: String(err) }, 'settling it failed; the idle sweep will ask again'));
  }
  const vc = await agent.openVirtual(o.hotspot, { gateway: o.gateway, kind: ChannelKind.Stream, balances: [[o.lock, 0n]] });
  announce('virtual', { channel: vc.id, lock: o.lock });

  const client = createPayingClient({ proxyUrl: o.proxyUrl, clientAddress: dev.signer.address, channel: vc.id, unitBytes: tariff.unitBytes, price: tariff.pricePerUnit, prepaidUnits: tariff.prepaidUnits, payments: streamPaymentsOut(agent, vc.id), sign: (d) => dev.signer.sign(d) });
  let bar: Progress | null = null;
  let result;
  try {
    result = await client.download(o.url, {
      mode: o.mode,
      onProgress: (p) => {
        if (!p.totalBytes) return;
        bar ??= new Progress('downloading', p.totalBytes);
        bar.update(p.bytes, `${(p.bytes / 1e6).toFixed(1)} MB, ${p.unitsPaid} units paid, ${p.vouchersPerSec.toFixed(0)} vouchers/s`);
      },
    });
  } catch (err) {
    // A failed download leaves nothing locked: the channel settles at what was paid.
    await agent.settleVirtual(vc.id).catch((e) => o.logger.warn({ channel: vc.id, err: String(e) }, 'settling after the failed download failed; the idle sweep will ask again'));
    throw err;
  }
  (bar as Progress | null)?.done();
  const paid = agent.channel(vc.id).voucher?.cumulative ?? 0n;
  announce('downloaded', { bytes: result.bytes, sha256: result.sha256, unitsPaid: result.unitsPaid, vouchers: result.vouchers, paid });
  o.logger.info({ bytes: result.bytes, paid: formatEth(paid) }, 'download complete');

  await agent.settleVirtual(vc.id);
  announce('settled', { channel: vc.id, paid });
  if (o.closeAfter) {
    await agent.finalize(dev.ledger.id);
    announce('closed', { channel: dev.ledger.id });
  }
}
