import { announce } from '../../src/cli/args.ts';
import { Progress } from '../../src/cli/progress.ts';
import { formatEth } from '../../src/cli/units.ts';
import { type Address, ChannelKind } from '../../src/model/types.ts';
import type { Logger } from '../../src/log.ts';
import { createPayingClient } from '../hotspot/client.ts';
import { streamPaymentsOut } from '../payments.ts';
import type { RunningDevice } from '../service.ts';

export interface PayerOptions {
  gateway: Address;
  hotspot: Address;
  proxyUrl: string;
  url: string;
  /** What the client locks in the stream channel: the most it can pay the hotspot. */
  lock: bigint;
  unitBytes: number;
  price: bigint;
  mode: 'forward' | 'connect';
  /** How long to wait for the ledger channel's deposits on-chain. */
  fundTimeoutMs: number;
  closeAfter: boolean;
  logger: Logger;
}

/** Downloads through the hotspot, paying one unit ahead with stream vouchers, then settles. */
export async function runPayer(dev: RunningDevice, o: PayerOptions): Promise<void> {
  const { agent } = dev;
  await dev.untilFunded(o.fundTimeoutMs);
  const reuse = agent.channelsWith(o.hotspot).find((c) => c.params.kind === ChannelKind.Stream && c.phase === 'open' && c.idx === 0);
  const vc = reuse ?? (await agent.openVirtual(o.hotspot, { gateway: o.gateway, kind: ChannelKind.Stream, balances: [[o.lock, 0n]] }));
  announce('virtual', { channel: vc.id, lock: o.lock });

  const client = createPayingClient({ proxyUrl: o.proxyUrl, clientAddress: dev.signer.address, unitBytes: o.unitBytes, price: o.price, payments: streamPaymentsOut(agent, vc.id), sign: (d) => dev.signer.sign(d) });
  let bar: Progress | null = null;
  const result = await client.download(o.url, {
    mode: o.mode,
    onProgress: (p) => {
      if (!p.totalBytes) return;
      bar ??= new Progress('downloading', p.totalBytes);
      bar.update(p.bytes, `${(p.bytes / 1e6).toFixed(1)} MB, ${p.unitsPaid} units paid, ${p.vouchersPerSec.toFixed(0)} vouchers/s`);
    },
  });
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
