import { join } from 'node:path';
import { Agent, type Timing, type UpdateContext } from '../src/client/agent.ts';
import { createChainClient, LOCAL_CHAIN_ID, type PendingTx, resumePending, startDevnet, type ChainClient, type Devnet } from '../src/chain/index.ts';
import { loadOrCreateKeystore } from '../src/crypto/keystore.ts';
import type { StoreError } from '../src/errors.ts';
import { outcomeHash, toHex } from '../src/model/hash.ts';
import { type Address, ChannelKind } from '../src/model/types.ts';
import type { Logger } from '../src/log.ts';
import { ChannelStore } from '../src/store/store.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../src/transport/broker.ts';
import { MqttTransport, type MqttTransportOptions } from '../src/transport/mqtt.ts';
import { brokerAuthority, brokerPassword } from '../src/transport/login.ts';
import { RelayAware } from '../src/transport/relay.ts';
import { startEnrollment } from './enrollment.ts';
import { depositNonces, GatewayChain } from './chain.ts';
import { startStatusServer } from './http.ts';
import { Intermediary } from '../src/client/intermediary.ts';
import type { ChannelRecord } from '../src/channel/record.ts';
import { admission, type AdmissionLimits } from './admission.ts';

export interface GatewayConfig {
  dataDir: string;
  password: string;
  /** Chain RPC; without it a local anvil is started and the contracts deployed. */
  rpcUrl?: string;
  chainId?: number;
  adjudicator?: Address;
  /** With rpcUrl: the block the adjudicator was deployed in (event reads start there). */
  adjudicatorBlock?: bigint;
  /** Broker URL; without it an embedded broker listens on 127.0.0.1:mqttPort. */
  mqttUrl?: string;
  mqttPort?: number;
  /** Other host:port names devices reach the embedded broker by (their login tokens name the broker). */
  mqttNames?: string[];
  httpPort?: number;
  /** What the gateway puts in, and for whom (see admission.ts). */
  limits: AdmissionLimits;
  holdTimeoutMs: number;
  /** What each device pays, in asset 0, when its ledger channel funds a virtual channel (default 0). */
  virtualFee?: bigint;
  /** Blocks deep a deposit or a registration must be to count (default 1: the latest block). */
  confirmations?: number;
  /** How long a device with a virtual channel open may stay offline before the gateway settles on-chain (ms). */
  offlineMs?: number;
  /** How often registrations are read directly and on-chain settlements advanced (ms). */
  sweepMs?: number;
  /** How often ledger channels still waiting for deposits are checked on-chain (ms); a funding request checks at once. */
  fundingPollMs?: number;
  mqttLogin?: Pick<MqttTransportOptions, 'username' | 'password' | 'tls' | 'enroll'>;
  /** With mqttUrl: the dynamic-security admin of a Mosquitto whose device logins the gateway issues (enrollment.ts). */
  mqttAdmin?: { username: string; password: string };
  timing?: Partial<Timing>;
  logger: Logger;
}

export interface RunningGateway {
  address: Address;
  rpcUrl: string;
  chainId: number;
  adjudicator: Address;
  mqttUrl: string;
  httpUrl: string;
  /** Called if the store refuses a write: the agent has stopped, and the process should restart from the store. */
  onFailed(listener: (err: StoreError) => void): void;
  stop(): Promise<void>;
}

const PENDING_TX = 'pending-tx:';
const journalKey = (pending: PendingTx): string => `${PENDING_TX}${String(pending.nonce).padStart(12, '0')}`;

/**
 * Transactions broadcast before a restart: waited for, all at once, stuck ones replaced.
 * An entry goes once its nonce is spent (onFinished); one given up on stays for the next
 * start. The gateway's own deposits are left to its chain duties, which record every
 * version of them (a version sent from here, unrecorded, could mine unseen, and the
 * deposit be sent again).
 */
async function resumeJournalled(client: ChainClient, store: ChannelStore, log: Logger): Promise<void> {
  const deposits = depositNonces(store.service);
  await Promise.all(
    store.service.factsWithPrefix<PendingTx>(PENDING_TX).filter(({ value }) => !deposits.has(value.nonce)).map(async ({ value }) => {
      try {
        const tx = await resumePending(client, value, client.send);
        log.info({ nonce: value.nonce, hash: tx.hash }, 'journalled transaction mined');
      } catch (err) {
        log.error({ nonce: value.nonce, err: String(err) }, 'journalled transaction could not be resumed');
      }
    }),
  );
}

/** A final state with the outcome as it is: it closes the channel and moves nothing. */
const closesAsIs = (ctx: UpdateContext): boolean => ctx.proposed.isFinal && outcomeHash(ctx.proposed.outcome) === outcomeHash(ctx.current.outcome);

/** Funds a fresh devnet account for the gateway's own transactions. */
async function fundFromDevnet(devnet: Devnet, to: Address): Promise<void> {
  const hash = await devnet.deployer.walletClient.sendTransaction({ to, value: 1000n * 10n ** 18n });
  await devnet.deployer.publicClient.waitForTransactionReceipt({ hash });
}

export async function startGateway(cfg: GatewayConfig): Promise<RunningGateway> {
  const log = cfg.logger;
  const { signer, created } = loadOrCreateKeystore(join(cfg.dataDir, 'key.json'), cfg.password);
  log.info({ address: signer.address, created }, 'gateway key');
  const cleanup: (() => Promise<unknown> | void)[] = [];
  try {
    let devnet: Devnet | null = null;
    let rpcUrl = cfg.rpcUrl;
    let chainId = cfg.chainId ?? LOCAL_CHAIN_ID;
    let adjudicator = cfg.adjudicator;
    if (!rpcUrl) {
      devnet = await startDevnet();
      cleanup.push(() => devnet!.stop());
      rpcUrl = devnet.anvil.rpcUrl;
      chainId = devnet.anvil.chainId;
      adjudicator = devnet.deployer.adjudicator;
      await fundFromDevnet(devnet, signer.address);
      log.info({ rpcUrl, adjudicator }, 'local chain started, contracts deployed');
    }
    if (!adjudicator) throw new Error('--adjudicator is required with --rpc-url');
    // A chain on this machine answers at once: poll it often.
    const local = ['127.0.0.1', 'localhost'].includes(new URL(rpcUrl).hostname);
    const store = new ChannelStore(join(cfg.dataDir, 'gateway.db'));
    cleanup.push(() => store.close());
    // Every broadcast is journalled before waiting, so a restart finishes (or replaces) it.
    const client: ChainClient = createChainClient({
      rpcUrl,
      chainId,
      privateKey: toHex(signer.exportPrivateKey()),
      adjudicator,
      pollingInterval: local ? 50 : 1000,
      fromBlock: cfg.adjudicatorBlock,
      // Journalled from broadcast until its nonce is spent, so a restart resumes only what is still in flight.
      send: { onBroadcast: (pending) => store.service.setFact(journalKey(pending), pending), onFinished: (pending) => store.service.deleteFact(journalKey(pending)) },
    });

    let broker: EmbeddedBroker | null = null;
    let mqttUrl = cfg.mqttUrl;
    if (!mqttUrl) {
      broker = await startEmbeddedBroker({ port: cfg.mqttPort ?? 0, names: cfg.mqttNames, logger: log.child({ part: 'broker' }) });
      cleanup.push(() => broker!.close());
      mqttUrl = broker.url;
      log.info({ mqttUrl }, 'embedded MQTT broker listening');
    }

    let enrolled = false;
    if (cfg.mqttAdmin && cfg.mqttUrl) {
      const enrollment = await startEnrollment({ url: mqttUrl, admin: cfg.mqttAdmin, tls: cfg.mqttLogin?.tls, logger: log.child({ part: 'enrollment' }) });
      cleanup.push(() => enrollment.close());
      await enrollment.issue(signer.address, brokerPassword(signer, brokerAuthority(mqttUrl)));
      enrolled = true;
    }
    const chain = { chainId: BigInt(chainId), adjudicator };
    const mqtt = new MqttTransport({ url: mqttUrl, self: signer.address, signer, ...cfg.mqttLogin, enroll: enrolled || cfg.mqttLogin?.enroll, watchAllPeers: true, logger: log.child({ part: 'mqtt' }) });
    // Devices with no internet of their own reach the gateway through a nearby peer that relays.
    const transport = new RelayAware(mqtt, signer, { onRefused: (err) => log.debug({ err: String(err) }, 'relay envelope refused') });
    let gatewayChain: GatewayChain | null = null;
    const intermediary = new Intermediary({ records: store.service, chain, holdTimeoutMs: cfg.holdTimeoutMs, fee: cfg.virtualFee, logger: log.child({ part: 'intermediary' }), isFunded: (id) => gatewayChain!.checkFunded(id), frozen: (id) => gatewayChain!.settlements.has(id), secureClaim: (vc, voucher) => gatewayChain!.settlements.secureClaim(vc, voucher) });
    const agent: Agent = new Agent({
      signer,
      transport,
      store,
      chain,
      logger: log,
      timing: cfg.timing,
      policy: {
        acceptOpen: admission((): ChannelRecord[] => agent.channels(), (id) => gatewayChain!.deviceFunded(id), cfg.limits),
        // A ledger channel moves only once both sides are on-chain: until then no payment,
        // so a channel the device never funds stays at version 0 and can be abandoned.
        // (A final state that changes nothing, closing it, is always fine.)
        // A channel being settled on-chain takes no update: what the chain pays is decided there.
        acceptUpdate: async (ctx) =>
          !gatewayChain!.settlements.has(ctx.channel.id) &&
          (ctx.channel.params.kind !== ChannelKind.Ledger || closesAsIs(ctx) || (await gatewayChain!.checkFunded(ctx.channel.id))) &&
          intermediary.decide(ctx),
      },
    });
    intermediary.attach(agent);
    gatewayChain = new GatewayChain({ client, agent, store, facts: store.service, pollMs: cfg.fundingPollMs, confirmations: cfg.confirmations, fundingTimeoutMs: cfg.limits.fundingTimeoutMs, eventPollMs: local ? 100 : 1000, intermediary, offlineMs: cfg.offlineMs, sweepMs: cfg.sweepMs, logger: log.child({ part: 'chain' }) });
    agent.start();
    await mqtt.connect();
    cleanup.push(() => transport.close(), () => agent.stop(), () => gatewayChain!.stop());
    await resumeJournalled(client, store, log);
    await gatewayChain.start();
    const http = await startStatusServer({ address: signer.address, agent, intermediary, isFunded: gatewayChain.isFunded, checkFunded: gatewayChain.checkFunded, limits: cfg.limits, disputes: () => ({ refuted: gatewayChain!.disputes.refuted, ...gatewayChain!.settlements.counts, open: gatewayChain!.settlements.list() }) }, cfg.httpPort ?? 0);
    cleanup.push(() => http.close());
    log.info({ address: signer.address, mqttUrl, rpcUrl, http: http.url }, 'gateway ready');
    return {
      address: signer.address,
      rpcUrl,
      chainId,
      adjudicator,
      mqttUrl,
      httpUrl: http.url,
      onFailed: (listener) => void agent.on('failed', listener),
      stop: async () => {
        await gatewayChain!.idle();
        for (const step of cleanup.reverse()) await step();
      },
    };
  } catch (err) {
    for (const step of cleanup.reverse()) await step();
    throw err;
  }
}
