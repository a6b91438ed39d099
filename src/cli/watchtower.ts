import { existsSync } from 'node:fs';
import type { ChannelRecord } from '../channel/record.ts';
import { isFullySigned, latestProposal } from '../channel/record.ts';
import { createChainClient, type Holding, type Latest, startWatchtower, type VirtualEvidence } from '../chain/index.ts';
import { readKeystore } from '../crypto/keystore.ts';
import { toHex } from '../model/hash.ts';
import { type Bytes32, ChannelKind } from '../model/types.ts';
import { createLogger } from '../log.ts';
import { ChannelStore } from '../store/store.ts';
import { ConfigError } from '../errors.ts';
import { address, announce, integer, parseOptions, required, usage } from './args.ts';
import { ADJUDICATOR_BLOCK_SPEC, adjudicatorBlock } from './connection.ts';

// A device that does not trust its gateway watches the chain for itself: this command
// reads the device's channel store (read-only use; the device keeps running) and answers
// any registration older than what the device holds, also one made while the tower was
// down, and concludes a ledger channel when its challenge period ends, which pays the
// device out. It can run on the device, or on any
// machine with a copy of the store and a funded key: a watchtower that is not the
// device's counterparty. Only this command loads the chain code.

const SPECS = {
  store: { type: 'string', arg: 'FILE,…', help: "the devices' channel stores (device.db), comma-separated: one tower can watch many devices" },
  'rpc-url': { type: 'string', arg: 'URL', help: 'chain RPC' },
  'chain-id': { type: 'string', arg: 'N', help: 'chain id' },
  adjudicator: { type: 'string', arg: 'ADDR', help: 'adjudicator contract' },
  ...ADJUDICATOR_BLOCK_SPEC,
  key: { type: 'string', arg: 'FILE', help: 'V3 keystore of the account that pays for answers (any funded key)' },
  'password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding its password', default: 'PICOPAY_PASSWORD' },
  confirmations: { type: 'string', arg: 'N', help: 'answer registrations this many blocks deep', default: '2' },
  'sweep-interval-ms': { type: 'string', arg: 'MS', help: "how often every channel's registration is read directly (besides the events)", default: '10000' },
} as const;

/** What the device holds (`rec`, live or retired) that beats an older registration of its channel. */
export function latestFrom(rec: ChannelRecord | undefined): Latest | null {
  if (!rec) return null;
  if (rec.params.kind === ChannelKind.Stream) {
    // Only the payee holds vouchers worth submitting.
    return rec.idx === 1 && rec.voucher ? { params: rec.params, voucher: { cumulative: rec.voucher.cumulative, signature: rec.voucher.sig } } : null;
  }
  return isFullySigned(rec.current) ? { params: rec.params, signed: rec.current } : null;
}

/**
 * What the device holds of a ledger channel (`rec`) for an on-chain settlement: its newest
 * fully signed state and, for each virtual channel it locks, the device's record of it
 * (`virtual(id)`): a stream's voucher (the payee's highest; the payer's own latest, which
 * is what it owes) or a bidirectional channel's newest state.
 */
export function holdingFrom(rec: ChannelRecord | undefined, virtual: (id: Bytes32) => ChannelRecord | undefined): Holding | null {
  if (!rec || rec.params.kind !== ChannelKind.Ledger || !isFullySigned(rec.current)) return null;
  const virtuals = new Map<string, VirtualEvidence>();
  for (const sub of rec.current.state.outcome.locked) {
    const vc = virtual(sub.id);
    if (!vc) continue;
    const voucher = vc.voucher ? { cumulative: vc.voucher.cumulative, signature: vc.voucher.sig } : undefined;
    virtuals.set(sub.id.toLowerCase(), { params: vc.params, voucher, signed: isFullySigned(vc.current) ? vc.current : undefined });
  }
  return { params: rec.params, signed: rec.current, proposed: latestProposal(rec)?.state, virtuals };
}

/** The newest of what several stores hold for one channel: the highest version, or the highest voucher. */
function newestOf(candidates: (Latest | null)[]): Latest | null {
  const rank = (l: Latest): bigint => ('signed' in l ? l.signed.state.version : l.voucher.cumulative);
  return candidates.reduce<Latest | null>((best, l) => (l && (!best || rank(l) > rank(best)) ? l : best), null);
}

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(usage('watchtower', "Watches the chain for a device and answers stale registrations of its channels with the newest state (or highest voucher) in the device's store.", SPECS, ['picopay watchtower --store .picopay/device/device.db --rpc-url https://rpc.example --chain-id 100 --adjudicator 0x… --key tower.json']));
    return;
  }
  const log = createLogger('watchtower');
  const signer = readKeystore(required(o.key, 'key'), process.env[o['password-env']!] ?? '');
  const client = createChainClient({
    rpcUrl: required(o['rpc-url'], 'rpc-url'),
    chainId: integer(required(o['chain-id'], 'chain-id'), 'chain-id')!,
    privateKey: toHex(signer.exportPrivateKey()),
    adjudicator: address(o.adjudicator, 'adjudicator'),
    fromBlock: adjudicatorBlock(o),
  });
  const paths = required(o.store, 'store').split(',').map((path) => path.trim()).filter(Boolean);
  // A mistyped path would be a new, empty store, and the tower would watch nothing.
  for (const path of paths) if (!existsSync(path)) throw new ConfigError(`--store ${path}: no such file`);
  const stores = paths.map((path) => new ChannelStore(path));
  const watcher = await startWatchtower(client, {
    confirmations: integer(o.confirmations, 'confirmations')!,
    // Read the stores afresh each time: the devices keep updating them.
    // The newest any store holds (an old copy listed first must not win).
    latest: (id) => newestOf(stores.map((store) => latestFrom(store.loadChannel(id)))),
    // Every channel is checked at start and now and then, so a registration made while the tower was down is answered too.
    channels: () => stores.flatMap((store) => store.loadChannels().map((c) => c.id)),
    sweepIntervalMs: integer(o['sweep-interval-ms'], 'sweep-interval-ms')!,
    onResponse: (r) => announce('answered', { channel: r.channelId, registeredVersion: r.answered.version, tx: r.tx.hash }),
    // Settles from the store holding the newest state of the ledger channel.
    holding: (id) => {
      const held = stores.flatMap((store) => {
        const rec = store.loadChannel(id);
        return rec ? [{ store, rec }] : [];
      });
      const best = held.reduce<(typeof held)[number] | null>((a, b) => (!a || b.rec.current.state.version > a.rec.current.state.version ? b : a), null);
      return best ? holdingFrom(best.rec, (vc) => best.store.loadChannel(vc)) : null;
    },
    onStep: (step, channel, tx) => announce(step, { channel, tx: tx.hash }),
    onError: (err) => log.error({ err: String(err) }, 'watchtower'),
  });
  announce('ready', { account: signer.address, stores: stores.length, channels: stores.reduce((n, s) => n + s.loadChannels().length, 0) });
  const stop = async (): Promise<void> => {
    await watcher.stop();
    for (const store of stores) store.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
