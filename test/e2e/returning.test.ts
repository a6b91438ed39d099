import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PicopayProcess } from '../../demo/processes.ts';
import { deposit, readHoldings } from '../../src/chain/index.ts';
import { type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { tempDir } from '../../src/testing/agents.ts';
import { processNetwork, WEI } from './fixture.ts';

// A payer that comes back, as separate processes on a real chain: it downloads, settles,
// runs again on the same data directory and is served from a fresh channel; a run whose
// download fails settles its channel instead of leaving it open; a hotspot restart in
// between changes nothing.

const UNIT = 102_400;

describe('a returning payer', () => {
  const net = processNetwork();

  it('pays, settles and comes back as often as it likes, across a hotspot restart; a failed run leaves nothing open', async () => {
    const dir = tempDir('picopay-returning-');
    const { start } = net;
    const devnet = net.devnet();
    const origin = net.origin();
    await net.keystore(join(dir, 'gateway', 'key.json'));
    const gateway = start('gateway', ['gateway', '--data-dir', join(dir, 'gateway'), ...net.chainArgs()]);
    const gw = await gateway.next('ready');
    const common = ['--gateway', gw.address as string, '--mqtt-url', gw.mqttUrl as string, '--chain-id', String(gw.chainId), '--adjudicator', gw.adjudicator as string, '--rpc-url', devnet.anvil.rpcUrl, '--deposit', WEI(10n ** 17n), '--gateway-deposit', WEI(10n ** 17n), '--price', WEI(10n ** 14n)];
    const owner = devnet.clients[6]!;
    const funded = async (p: PicopayProcess): Promise<void> => {
      const ledger = await p.next('ledger');
      const holdings = await readHoldings(owner, ledger.channel as Bytes32, NATIVE_ASSET);
      if (holdings.amount === 0n) await deposit(owner, { channelId: ledger.channel as Bytes32, asset: NATIVE_ASSET, amount: 10n ** 17n });
    };
    const hotspotArgs = ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--allow-upstream', new URL(origin.url).host, ...common];
    let hotspot: PicopayProcess = start('hotspot', hotspotArgs);
    await funded(hotspot);
    let ready = await hotspot.next('ready');
    const payer = async (download: string, extra: string[] = []): Promise<{ code: number | null; events: PicopayProcess['events'] }> => {
      const p = start('payer', ['device', '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', ready.address as string, '--proxy-url', ready.proxyUrl as string, '--download', download, '--lock', WEI(10n ** 16n), ...common, ...extra]);
      await funded(p);
      return { code: await p.exited(), events: p.events };
    };
    const channels = new Set<string>();
    for (const run of ['first', 'second', 'after a hotspot restart']) {
      if (run === 'after a hotspot restart') {
        await hotspot.stop();
        hotspot = start('hotspot', hotspotArgs);
        ready = await hotspot.next('ready');
      }
      const { code, events } = await payer(`${origin.url}/bytes/${3 * UNIT}`);
      expect(code, run).toBe(0);
      expect(events.find((e) => e.event === 'downloaded')?.bytes, run).toBe(3 * UNIT);
      const settled = events.find((e) => e.event === 'settled');
      expect(settled, run).toBeDefined();
      channels.add(settled!.channel as string);
    }
    expect(channels.size).toBe(3);
    // A download that fails (the origin has no such path) settles its channel.
    const failed = await payer(`${origin.url}/nothing-here`);
    expect(failed.code).not.toBe(0);
    const opened = failed.events.find((e) => e.event === 'virtual')!.channel as string;
    const status = (await (await fetch(`${gw.httpUrl as string}/status`)).json()) as { virtualChannels: string[] };
    const end = Date.now() + 20_000;
    let open = status.virtualChannels.includes(opened);
    while (open && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      open = ((await (await fetch(`${gw.httpUrl as string}/status`)).json()) as { virtualChannels: string[] }).virtualChannels.includes(opened);
    }
    expect(open).toBe(false);
    // A paying client asking the hotspot for this machine's services (the gateway's status
    // API, anvil's JSON-RPC with its unlocked accounts) is refused, and its channel settled.
    for (const target of [`${gw.httpUrl as string}/status`, devnet.anvil.rpcUrl]) {
      const r = await payer(target);
      expect(r.code, target).toBe(2);
      expect(r.events.some((e) => e.event === 'downloaded'), target).toBe(false);
    }
    // A payer whose limit is below the hotspot's signed price refuses before it opens a channel.
    const cheap = await payer(`${origin.url}/bytes/${UNIT}`, ['--price', WEI(5n * 10n ** 13n)]);
    expect(cheap.code).toBe(2);
    expect(cheap.events.some((e) => e.event === 'virtual')).toBe(false);
  }, 300_000);
});
