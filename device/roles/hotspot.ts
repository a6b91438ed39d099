import { announce } from '../../src/cli/args.ts';
import { ChannelKind } from '../../src/model/types.ts';
import type { Logger } from '../../src/log.ts';
import { startMeteredProxy } from '../hotspot/proxy.ts';
import { storedServedLog, StreamPaymentsIn } from '../payments.ts';
import type { RunningDevice } from '../service.ts';

export interface HotspotOptions {
  proxyPort: number;
  unitBytes: number;
  price: bigint;
  idleCutoffMs: number;
  /** How long to wait for the ledger channel's deposits on-chain before serving. */
  fundTimeoutMs: number;
  /** Demo: close the ledger channel once the first client's stream channel has settled. */
  closeAfterSettle: boolean;
  /** host:port names clients reach the proxy by, besides the address it listens on. */
  proxyNames: string[];
  /** host:port destinations clients may reach although not public. */
  allowUpstream: string[];
  logger: Logger;
}

/** Serves clients through the metered proxy, paid by stream vouchers. */
export async function runHotspot(dev: RunningDevice, o: HotspotOptions): Promise<{ stop(): Promise<void> }> {
  // Earnings come through the gateway's side of the ledger channel: it must be on-chain first.
  await dev.untilFunded(o.fundTimeoutMs);
  const payments = new StreamPaymentsIn(dev.agent);
  const servedLog = storedServedLog(dev.facts);
  const proxy = await startMeteredProxy({ servedLog, hotspot: { address: dev.signer.address, sign: (d) => dev.signer.sign(d) }, port: o.proxyPort, unitBytes: o.unitBytes, price: o.price, payments, idleCutoffMs: o.idleCutoffMs, authorities: o.proxyNames, upstream: { allowed: o.allowUpstream }, logger: o.logger.child({ part: 'proxy' }) });
  // A re-org took a deposit of the ledger channel: what clients pay is not backed until it is back.
  dev.onFunding((funded) => (funded ? proxy.resume() : proxy.pause()));
  if (!dev.funded) proxy.pause();
  dev.agent.on('retired', (vc) => {
    if (vc.params.kind !== ChannelKind.Stream) return;
    proxy.closeChannel(vc.id);
    servedLog.forget(vc.id);
  });
  dev.agent.on('voucher', ({ channel, cumulative }) => o.logger.debug({ client: channel.peer, cumulative: cumulative.toString() }, 'voucher'));
  dev.agent.on('settled', (vc) => {
    if (vc.params.kind !== ChannelKind.Stream) return;
    announce('settled', { channel: vc.id, client: vc.peer, paid: vc.voucher?.cumulative ?? 0n });
    if (!o.closeAfterSettle) return;
    dev.agent
      .finalize(dev.ledger.id)
      .then(() => announce('closed', { channel: dev.ledger.id }))
      .catch((err) => o.logger.error({ err: String(err) }, 'closing the ledger channel failed'));
  });
  announce('ready', { role: 'hotspot', address: dev.signer.address, ledger: dev.ledger.id, proxyUrl: proxy.url, unitBytes: o.unitBytes, price: o.price });
  return { stop: () => proxy.close() };
}
