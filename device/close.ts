import { join } from 'node:path';
import { Agent } from '../src/client/agent.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { isFullySigned } from '../src/channel/record.ts';
import { advanceSettlement, type ChainClient, cooperativeClose, createChainClient, isRpcUnreachable, readHoldings } from '../src/chain/index.ts';
import { holdingFrom } from '../src/cli/watchtower.ts';
import { address, announce, integer, parseOptions, usage } from '../src/cli/args.ts';
import { ADJUDICATOR_BLOCK_SPEC, adjudicatorBlock, CONNECTION_SPECS, mqttLogin } from '../src/cli/connection.ts';
import { formatEth } from '../src/cli/units.ts';
import { readKeystore } from '../src/crypto/keystore.ts';
import { ChainReadError, ConfigError } from '../src/errors.ts';
import { toHex } from '../src/model/hash.ts';
import { type Address, ChannelKind } from '../src/model/types.ts';
import { createLogger, type Logger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { Backoff } from '../src/transport/backoff.ts';
import { MqttTransport } from '../src/transport/mqtt.ts';
import { readGatewayInfo } from './gatewayInfo.ts';

// `picopay close`: a device takes its money out of its ledger channel, with its gateway or
// without it. First cooperatively: it asks the gateway to sign a final state and closes
// on-chain with it at once. If the gateway does not answer within --timeout (or with
// --force), on-chain from its own store alone: it registers its newest fully signed state,
// waits out the challenge period, concludes, and releases the virtual channels it funds
// with the vouchers or states the device holds; the funds land at the device's address.
// Every step reads the chain first, so an interrupted run is resumed by running it again.
// The one device command that loads chain code.

/** How long the chain RPC may not answer before the close gives up (one line, exit 2; run it again to resume). */
const RPC_PATIENCE_MS = 300_000;

const SPECS = {
  'data-dir': { type: 'string', arg: 'DIR', help: "the device's key and store", default: join('.picopay', 'device') },
  'password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding the keystore password', default: 'PICOPAY_PASSWORD' },
  'gateway-info': { type: 'string', arg: 'FILE', help: "the gateway's ready line (JSON): gateway, broker, chain id, adjudicator, RPC" },
  gateway: { type: 'string', arg: 'ADDR', help: 'the gateway (default: from --gateway-info)' },
  'mqtt-url': { type: 'string', arg: 'URL', help: 'its broker, for the cooperative close (default: from --gateway-info)' },
  'rpc-url': { type: 'string', arg: 'URL', help: 'chain RPC (default: from --gateway-info)' },
  'chain-id': { type: 'string', arg: 'N', help: 'chain id (default: from --gateway-info)' },
  adjudicator: { type: 'string', arg: 'ADDR', help: 'adjudicator contract (default: from --gateway-info)' },
  ...ADJUDICATOR_BLOCK_SPEC,
  'gas-key': { type: 'string', arg: 'FILE', help: "V3 keystore of the account paying gas (default: the device's own key)" },
  force: { type: 'boolean', help: 'do not ask the gateway: close on-chain from the store alone' },
  timeout: { type: 'string', arg: 'SECONDS', help: 'how long the gateway has to sign the final state before the close goes on-chain alone', default: '30' },
  ...CONNECTION_SPECS,
} as const;

export async function main(argv: string[]): Promise<void> {
  const o = parseOptions(argv, SPECS);
  if (o.help) {
    process.stdout.write(
      usage('close', "Closes this device's ledger channel and pays its balance to its address: with the gateway if it answers, else on-chain alone (register, wait the challenge period, conclude, release the virtual channels it funds). Run it again to resume. Prints JSON lines on stdout.", SPECS, [
        'picopay close --data-dir .picopay/device --gateway-info gateway.json',
        'picopay close --data-dir .picopay/device --rpc-url https://rpc.example --chain-id 100 --adjudicator 0x… --force',
      ]),
    );
    return;
  }
  const info = readGatewayInfo(o['gateway-info']);
  const log = createLogger('close');
  const password = process.env[o['password-env']!] ?? '';
  const dataDir = o['data-dir']!;
  const signer = readKeystore(join(dataDir, 'key.json'), password);
  const payer = o['gas-key'] ? readKeystore(o['gas-key'], password) : signer;
  const chain = { chainId: BigInt(integer(o['chain-id'] ?? info.chainId?.toString(), 'chain-id')!), adjudicator: address(o.adjudicator ?? info.adjudicator, 'adjudicator') };
  const rpcUrl = o['rpc-url'] ?? info.rpcUrl;
  if (!rpcUrl) throw new ConfigError('--rpc-url is required (or --gateway-info naming one)');
  const timeoutMs = integer(o.timeout, 'timeout')! * 1000;
  const client = createChainClient({ rpcUrl, chainId: Number(chain.chainId), privateKey: toHex(payer.exportPrivateKey()), adjudicator: chain.adjudicator, fromBlock: adjudicatorBlock(o) });
  const store = new ChannelStore(join(dataDir, 'device.db'));
  try {
    const ledgers = store.loadChannels().filter((c) => c.params.kind === ChannelKind.Ledger && c.phase !== 'opening');
    if (ledgers.length === 0) throw new ConfigError(`no ledger channel in ${dataDir}: nothing to close`);
    // The RPC away for a while (an outage, a node restarting) is waited out, not a reason to stop half-way.
    const backoff = new Backoff({ initialMs: 1000, maxMs: 15_000 });
    const closeOne = async (rec: ChannelRecord): Promise<void> => {
      for (let since = Date.now(); ; ) {
        try {
          // Read again each time: an attempt cut short may have finalized it.
          return await closeLedger(store.loadChannel(rec.id) ?? rec);
        } catch (err) {
          if (!isRpcUnreachable(err) || Date.now() - since > RPC_PATIENCE_MS) throw isRpcUnreachable(err) ? new ChainReadError(`the chain RPC ${rpcUrl} did not answer for ${RPC_PATIENCE_MS / 1000} s`, { cause: err }) : err;
          log.warn({ err: String((err as Error).message).split('\n')[0] }, 'the chain RPC did not answer; trying again');
          await new Promise((r) => setTimeout(r, backoff.next()));
        }
      }
    };
    const closeLedger = async (rec: ChannelRecord): Promise<void> => {
      const locks = rec.current.state.outcome.locked.length > 0;
      if (!locks && (await readHoldings(client, rec.id, rec.current.state.outcome.assets[0]!)).concluded) {
        announce('closed', { channel: rec.id, how: 'already' });
        return;
      }
      // A channel that funds virtual channels is finalized once they settle; else it goes on-chain with them.
      if (!o.force && rec.phase !== 'final') rec = (await finalizeWithGateway(rec, { signer, store, chain, gateway: o.gateway ?? info.address, mqttUrl: o['mqtt-url'] ?? info.mqttUrl, login: mqttLogin(o), timeoutMs, log })) ?? rec;
      if (rec.phase === 'final' && isFullySigned(rec.current)) {
        // The gateway closes it too, as soon as the final state is signed: whoever is first pays out.
        const tx = await cooperativeClose(client, { params: rec.params, signed: rec.current }).catch(async (err: unknown) => {
          if ((await readHoldings(client, rec.id, rec.current.state.outcome.assets[0]!)).concluded) return null;
          throw err;
        });
        announce('closed', { channel: rec.id, how: 'cooperative', tx: tx?.hash ?? null, paid: formatEth(rec.current.state.outcome.balances[0]![rec.idx]) });
        return;
      }
      await closeAlone(client, rec, store, log);
    };
    for (const rec of ledgers) await closeOne(rec);
  } finally {
    store.close();
  }
}

/** Asks the gateway for a final state; the record with it, or null if the gateway did not answer in time. */
async function finalizeWithGateway(
  rec: ChannelRecord,
  o: { signer: ReturnType<typeof readKeystore>; store: ChannelStore; chain: { chainId: bigint; adjudicator: Address }; gateway?: string; mqttUrl?: string; login: ReturnType<typeof mqttLogin>; timeoutMs: number; log: Logger },
): Promise<ChannelRecord | null> {
  if (!o.mqttUrl) return null;
  const transport = new MqttTransport({ url: o.mqttUrl, self: o.signer.address, signer: o.signer, ...o.login, connectTimeoutMs: o.timeoutMs, logger: o.log.child({ part: 'mqtt' }) });
  const agent = new Agent({ signer: o.signer, transport, store: o.store, chain: o.chain, logger: o.log, timing: { requestTimeoutMs: o.timeoutMs } });
  agent.start();
  try {
    await transport.connect();
    // Its virtual channels first, with their peers and the gateway (one a crash left half-settled
    // is finished here); what does not settle in time goes on-chain with the ledger channel.
    for (const { id } of agent.channel(rec.id).current.state.outcome.locked) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('not settled in time')), o.timeoutMs)));
      await Promise.race([agent.settleVirtual(id), late])
        .catch((err: unknown) => o.log.warn({ channel: id, err: String(err) }, 'a virtual channel did not settle with its peer'))
        .finally(() => clearTimeout(timer));
    }
    if (agent.channel(rec.id).current.state.outcome.locked.length > 0) return null;
    await agent.finalize(rec.id);
    return agent.channel(rec.id);
  } catch (err) {
    o.log.warn({ channel: rec.id, err: String(err) }, 'the gateway did not sign a final state: closing on-chain alone');
    return null;
  } finally {
    agent.stop();
    await transport.close().catch(() => {});
  }
}

/**
 * On-chain from the store alone (settle.ts): registers the newest fully signed state,
 * waits out the challenge period, concludes, and resolves and releases each virtual
 * channel the state locks with what the device holds of it. Shows how long is left while
 * it waits; run again, it carries on where the chain stands.
 */
async function closeAlone(client: ChainClient, rec: ChannelRecord, store: ChannelStore, log: Logger): Promise<void> {
  const held = holdingFrom(rec, (id) => store.loadChannel(id));
  if (!held) throw new ConfigError(`channel ${rec.id} has no fully signed state to register`);
  for (let said = 0; ; ) {
    const settlement = await advanceSettlement(client, held, { onStep: (step, channel, tx) => announce(step, { channel, tx: tx.hash }) });
    if (settlement.status === 'settled') break;
    const { timestamp } = await client.publicClient.getBlock();
    const left = Number(settlement.until - timestamp);
    if (Date.now() - said > 60_000) {
      announce('waiting', { channel: settlement.channel, secondsLeft: left });
      log.info({ channel: settlement.channel, secondsLeft: left }, 'challenge period running');
      said = Date.now();
    }
    await new Promise((r) => setTimeout(r, Math.min(5_000, Math.max(200, left * 100))));
  }
  announce('closed', { channel: rec.id, how: 'on-chain', paid: formatEth(rec.current.state.outcome.balances[0]![rec.idx]) });
}
