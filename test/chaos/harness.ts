import { closeSync, mkdtempSync, openSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Hash } from 'viem';
import { PicopayProcess } from '../../demo/processes.ts';
import type { Origin } from '../../device/hotspot/origin.ts';
import { pseudoRandomSha256 } from '../../device/hotspot/origin.ts';
import { type ChainClient, deposit, type Devnet, readHoldings } from '../../src/chain/index.ts';
import { writeKeystore } from '../../src/crypto/keystore.ts';
import { Signer } from '../../src/crypto/keys.ts';
import { type Address, type Bytes32, NATIVE_ASSET } from '../../src/model/types.ts';
import { seededRandom } from '../../src/transport/random.ts';
import { freePort } from '../transport/helpers.ts';
import { startRpcProxy } from './rpcProxy.ts';

// One chaos run: a gateway, a hotspot and a payer as real processes on anvil (through an
// RPC endpoint that can go down), a paid download with the payer closing its channel after
// it, and one fault drawn from the seed: a party killed (SIGKILL, or a power cut that loses
// what it had not fsynced) at a moment of open, download, settlement or close, and
// restarted with the same command; a re-org at or below the confirmation depth of the next
// chain effect; the RPC down for a while. Nobody helps afterwards: the run then waits for
// the payer to finish, closes the hotspot as its owner would, and reads the chain. The
// harness is the devices' owner too, a wallet that re-sends a deposit a re-org dropped.

export type Party = 'payer' | 'hotspot' | 'gateway';
export type Phase = 'open' | 'download' | 'settle' | 'close';
export type ChainFault = 'none' | 'reorg' | 'rpc-down';

export interface Plan {
  victim: Party | null;
  phase: Phase;
  powerCut: boolean;
  killDelayMs: number;
  restartDelayMs: number;
  chain: ChainFault;
  chainPhase: Phase;
  reorgDepth: number;
  downMs: number;
  /** Where the download is held for a fault during it, in units. */
  holdUnits: number;
}

export interface Report {
  seed: number;
  plan: Plan;
  recovered: boolean;
  /** Wei some party did not get back or was not paid: 0 in every run. */
  lost: bigint;
  problems: string[];
  seconds: number;
  log: string;
}

export interface ChaosEnv {
  devnet: Devnet;
  origin: Origin;
  /** The devices' owner: deposits their side. */
  owner: ChainClient;
}

const UNIT = 102_400;
const PRICE = 10n ** 14n;
const DEPOSIT = 10n ** 17n;
const LOCK = 10n ** 16n;
const SIZE = 6 * UNIT + 123;
const CONFIRMATIONS = 2;
const PHASES: Phase[] = ['open', 'download', 'settle', 'close'];
const PARTIES: Party[] = ['payer', 'hotspot', 'gateway'];

export function planOf(seed: number): Plan {
  // Seeded, so that a run can be replayed from its seed.
  const r = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const victim = r() < 0.85 ? pick(PARTIES) : null;
  return {
    victim,
    phase: pick(PHASES),
    powerCut: victim !== 'gateway' && r() < 0.4,
    killDelayMs: Math.floor(r() * 300),
    restartDelayMs: 200 + Math.floor(r() * 1500),
    chain: victim === null ? pick(['reorg', 'rpc-down'] as const) : pick(['none', 'none', 'reorg', 'rpc-down'] as const),
    chainPhase: pick(PHASES),
    reorgDepth: 1 + Math.floor(r() * CONFIRMATIONS),
    downMs: 3000 + Math.floor(r() * 9000),
    holdUnits: 1 + Math.floor(r() * 4),
  };
}

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export async function chaosRun(env: ChaosEnv, seed: number): Promise<Report> {
  const started = Date.now();
  const plan = planOf(seed);
  const { devnet, origin, owner } = env;
  const problems: string[] = [];
  // Kept after the run: its log tells what happened when a run did not recover.
  const dir = mkdtempSync(join(tmpdir(), 'picopay-chaos-'));
  const log = join(dir, 'run.log');
  const logFd = openSync(log, 'a');
  const rpc = await startRpcProxy(devnet.anvil.rpcUrl);
  const test = devnet.deployer.publicClient;
  const anvil = (method: string, params: unknown[] = []) => test.request({ method: method as never, params: params as never });
  // A live chain: a block every 300 ms, so that confirmations come; paused around a re-org.
  let mining = true;
  const miner = setInterval(() => void (mining && anvil('evm_mine').catch(() => undefined)), 300);
  const all: PicopayProcess[] = [];
  try {
    // Keys, funded for gas (a device pays gas only when it closes on-chain itself).
    const keys = new Map<Party, Address>();
    for (const party of PARTIES) {
      const key = Signer.random();
      writeKeystore(join(dir, party, 'key.json'), key, '', { scryptN: 1 << 10 });
      keys.set(party, key.address);
      await test.waitForTransactionReceipt({ hash: await devnet.deployer.walletClient.sendTransaction({ to: key.address, value: 10n ** 19n }) });
    }
    const [mqttPort, httpPort, proxyPort] = [await freePort(), await freePort(), await freePort()];
    const chainArgs = ['--rpc-url', rpc.url, '--chain-id', String(devnet.anvil.chainId), '--adjudicator', devnet.deployer.adjudicator];
    const gatewayAddress = keys.get('gateway')!;
    const mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    const common = ['--gateway', gatewayAddress, '--mqtt-url', mqttUrl, ...chainArgs, '--confirmations', String(CONFIRMATIONS), '--deposit', `${DEPOSIT}wei`, '--gateway-deposit', `${DEPOSIT}wei`, '--price', `${PRICE}wei`];
    const hotspotUrl = `http://127.0.0.1:${proxyPort}`;
    const url = `${origin.url}/bytes/${SIZE}`;
    const args: Record<Party, string[]> = {
      gateway: ['gateway', '--data-dir', join(dir, 'gateway'), ...chainArgs, '--mqtt-port', String(mqttPort), '--http-port', String(httpPort), '--confirmations', String(CONFIRMATIONS), '--sweep-interval-ms', '2000'],
      hotspot: ['device', '--role', 'hotspot', '--data-dir', join(dir, 'hotspot'), '--proxy-port', String(proxyPort), '--allow-upstream', new URL(origin.url).host, ...common],
      payer: ['device', '--role', 'payer', '--data-dir', join(dir, 'payer'), '--hotspot', keys.get('hotspot')!, '--proxy-url', hotspotUrl, '--download', url, '--lock', `${LOCK}wei`, '--retry-for', '120', '--close-after', ...common],
    };
    const processEnv = { PICOPAY_LOG: process.env.CHAOS_LOG ?? 'info', PICOPAY_PASSWORD: '', PICOPAY_STORE_WRITE_BACK: plan.powerCut ? '1' : '0' };

    // The owner's wallet: deposits each device's side once, and again if a re-org dropped it.
    const ledgers = new Map<Bytes32, { party: Party; deposits: Hash[] }>();
    const fundLedger = async (party: Party, channel: Bytes32): Promise<void> => {
      if (ledgers.has(channel)) return;
      const entry = { party, deposits: [] as Hash[] };
      ledgers.set(channel, entry);
      entry.deposits.push((await deposit(owner, { channelId: channel, asset: NATIVE_ASSET, amount: DEPOSIT })).hash);
    };
    // In the chain as it stands: anvil may still answer a receipt from a block a re-org replaced.
    const landed = async (hash: Hash): Promise<boolean> => {
      const receipt = await test.getTransactionReceipt({ hash }).catch(() => null);
      return receipt?.status === 'success' && (await test.getBlock({ blockNumber: receipt.blockNumber })).hash === receipt.blockHash;
    };
    let walletBusy = false;
    const wallet = setInterval(() => {
      if (walletBusy) return;
      walletBusy = true;
      void (async () => {
        for (const [channel, entry] of ledgers) {
          if (entry.deposits.length === 0 || (await landed(entry.deposits.at(-1)!))) continue;
          if ((await readHoldings(owner, channel, NATIVE_ASSET)).concluded) continue;
          // As a node would put a re-orged transaction back in its pool: the same one again
          // (anvil drops it, and its nonce is not always handed out again).
          const last = entry.deposits.at(-1)!;
          const raw: unknown = await anvil('eth_getRawTransactionByHash', [last]).catch(() => null);
          if (typeof raw === 'string' && raw !== '0x') {
            await anvil('eth_sendRawTransaction', [raw]).catch(() => undefined);
            await test.waitForTransactionReceipt({ hash: last, timeout: 5000 }).catch(() => undefined);
            if (await landed(last)) continue;
          }
          entry.deposits.push((await deposit(owner, { channelId: channel, asset: NATIVE_ASSET, amount: DEPOSIT })).hash);
        }
      })()
        .catch(() => undefined)
        .finally(() => (walletBusy = false));
    }, 1000);

    const current = new Map<Party, PicopayProcess>();
    let payerRuns = 0;
    const start = (party: Party): PicopayProcess => {
      const p = new PicopayProcess(party, args[party], { env: processEnv, stderr: logFd });
      all.push(p);
      p.child.once('exit', (code, signal) => writeSync(logFd, `# ${party} (pid ${p.child.pid}) exited: code ${code}, signal ${signal}\n`));
      current.set(party, p);
      if (party === 'payer') payerRuns++;
      if (party !== 'gateway') void p.next('ledger', 600_000).then((e) => fundLedger(party, e.channel as Bytes32)).catch(() => undefined);
      return p;
    };

    const before = new Map<Address, bigint>();
    const accounts = [...keys.values(), owner.account];
    for (const a of accounts) before.set(a, await test.getBalance({ address: a }));
    const startBlock = await test.getBlockNumber({ cacheTime: 0 });
    const sentBefore = origin.sent;

    await within(60_000, 'gateway ready', start('gateway').next('ready'));
    await within(60_000, 'hotspot ready', start('hotspot').next('ready'));
    start('payer');
    // The download is held where a fault is to strike it, until the fault has struck.
    let strikes = (plan.victim !== null && plan.phase === 'download' ? 1 : 0) + (plan.chain !== 'none' && plan.chainPhase === 'download' ? 1 : 0);
    const hold = strikes > 0 ? origin.hold(plan.holdUnits * UNIT) : null;
    const struck = (phase: Phase): void => {
      if (phase === 'download' && --strikes === 0) hold!.release();
    };
    // A moment of the payer's run, whichever incarnation of it gets there.
    const reached = async (phase: Phase): Promise<unknown> => {
      if (phase === 'download') return hold!.reached;
      for (;;) {
        const payer = current.get('payer')!;
        try {
          return await payer.next({ open: 'ledger', settle: 'downloaded', close: 'settled' }[phase], 150_000);
        } catch (err) {
          await sleep(plan.restartDelayMs + 100);
          if (current.get('payer') === payer) throw err;
        }
      }
    };

    const kill = async (): Promise<void> => {
      if (!plan.victim) return;
      await reached(plan.phase);
      await sleep(plan.killDelayMs);
      await current.get(plan.victim)!.stop('SIGKILL');
      struck(plan.phase);
      await sleep(plan.restartDelayMs);
      start(plan.victim);
    };
    const chainFault = async (): Promise<void> => {
      if (plan.chain === 'none') return;
      await reached(plan.chainPhase);
      if (plan.chain === 'rpc-down') {
        rpc.down(plan.downMs);
      } else {
        // The next chain effect (a block with a transaction) is re-orged away, with what came just before it.
        mining = false;
        const from = await test.getBlockNumber({ cacheTime: 0 });
        const end = Date.now() + 20_000;
        for (let n = from + 1n; Date.now() < end; ) {
          const head = await test.getBlockNumber({ cacheTime: 0 });
          if (head >= n && (await test.getBlock({ blockNumber: n })).transactions.length > 0) break;
          if (head >= n) n++;
          await sleep(20);
        }
        await anvil('anvil_reorg', [plan.reorgDepth, []]);
        mining = true;
      }
      struck(plan.chainPhase);
    };
    const faults = Promise.allSettled([kill(), chainFault()]).then((results) => {
      for (const r of results) if (r.status === 'rejected') problems.push(`fault not injected: ${String(r.reason)}`);
    });

    // Everything after this is the software on its own.
    let payer = current.get('payer')!;
    let code: number | null = null;
    const deadline = Date.now() + 180_000;
    for (;;) {
      code = await within(Math.max(1, deadline - Date.now()), 'the payer finishing', payer.exited()).catch((err: unknown) => (problems.push(String(err)), null));
      // A payer killed by the plan is restarted: the new one is the one to wait for.
      await within(Math.max(1, deadline - Date.now()), 'the faults', faults).catch(() => undefined);
      if (current.get('payer') !== payer) {
        payer = current.get('payer')!;
        continue;
      }
      break;
    }
    await faults;
    hold?.release();
    const downloaded = payer.events.find((e) => e.event === 'downloaded');
    if (code !== 0) problems.push(`the payer exited with ${code}`);
    if (downloaded?.sha256 !== pseudoRandomSha256(SIZE)) problems.push('the last payer run did not download the file');

    // The hotspot's owner closes it; then every ledger channel must be paid out on-chain.
    await current.get('hotspot')!.stop();
    const close = new PicopayProcess('close', ['close', '--data-dir', join(dir, 'hotspot'), '--gateway', gatewayAddress, '--mqtt-url', mqttUrl, ...chainArgs], { env: processEnv, stderr: logFd });
    all.push(close);
    const closed = await within(120_000, 'closing the hotspot', close.exited()).catch((err: unknown) => (problems.push(String(err)), null));
    if (closed !== 0) problems.push(`picopay close exited with ${closed}`);
    const open = async (): Promise<Bytes32[]> => {
      const left: Bytes32[] = [];
      for (const channel of ledgers.keys()) {
        const h = await readHoldings(owner, channel, NATIVE_ASSET);
        if (!h.concluded || h.amount > 0n) left.push(channel);
      }
      return left;
    };
    const settleBy = Date.now() + 60_000;
    while ((await open()).length > 0 && Date.now() < settleBy) await sleep(500);
    for (const channel of await open()) problems.push(`ledger channel ${channel} not paid out`);
    clearInterval(wallet);
    for (const p of current.values()) await p.stop();

    // The books: every party's change on-chain, gas added back.
    const end = await test.getBlockNumber({ cacheTime: 0 });
    const gas = new Map<Address, bigint>(accounts.map((a) => [a.toLowerCase() as Address, 0n]));
    for (let n = startBlock + 1n; n <= end; n++) {
      const block = await test.getBlock({ blockNumber: n, includeTransactions: true });
      for (const tx of block.transactions) {
        const from = tx.from.toLowerCase() as Address;
        if (!gas.has(from)) continue;
        const r = await test.getTransactionReceipt({ hash: tx.hash });
        gas.set(from, gas.get(from)! + r.gasUsed * r.effectiveGasPrice);
      }
    }
    const change = async (a: Address): Promise<bigint> => (await test.getBalance({ address: a })) - before.get(a)! + gas.get(a.toLowerCase() as Address)!;
    const deposited = async (party: Party): Promise<bigint> => {
      let sum = 0n;
      for (const entry of ledgers.values()) if (entry.party === party) for (const hash of entry.deposits) if (await landed(hash)) sum += DEPOSIT;
      return sum;
    };
    let locked = 0n;
    for (const channel of ledgers.keys()) locked += (await readHoldings(owner, channel, NATIVE_ASSET)).amount;
    const gatewayChange = await change(gatewayAddress);
    const paid = (await deposited('payer')) - (await change(keys.get('payer')!));
    const earned = (await change(keys.get('hotspot')!)) - (await deposited('hotspot'));
    const served = origin.sent - sentBefore;
    // The payer pays one unit ahead, and once more each time a download goes on after an interruption.
    const most = PRICE * BigInt(Math.ceil(served / UNIT) + 2 * payerRuns + 2);
    const least = PRICE * BigInt(Math.floor(SIZE / UNIT));
    if (locked > 0n) problems.push(`${locked} wei still locked in the adjudicator`);
    if (gatewayChange !== 0n) problems.push(`the gateway's balance changed by ${gatewayChange} wei besides gas`);
    if (paid !== earned) problems.push(`the payer paid ${paid} wei, the hotspot got ${earned}`);
    if (paid > most) problems.push(`the payer paid ${paid} wei for ${served} bytes sent (at most ${most})`);
    if (downloaded && earned < least) problems.push(`the hotspot got ${earned} wei for a whole download (at least ${least})`);
    // What a party is short of its due (funds still locked show up here, as someone's shortfall).
    const lost = (gatewayChange < 0n ? -gatewayChange : 0n) + (paid > most ? paid - most : 0n) + (downloaded && earned < least ? least - earned : 0n);
    return { seed, plan, recovered: problems.length === 0, lost, problems, seconds: (Date.now() - started) / 1000, log };
  } catch (err) {
    problems.push(`run failed: ${String(err)}`);
    return { seed, plan, recovered: false, lost: 0n, problems, seconds: (Date.now() - started) / 1000, log };
  } finally {
    clearInterval(miner);
    mining = false;
    for (const p of all) await p.stop();
    await rpc.close();
    closeSync(logFd);
  }
}

export function describePlan(p: Plan): string {
  const kill = p.victim ? `${p.powerCut ? 'power cut' : 'SIGKILL'} of the ${p.victim} at ${p.phase}` : 'no kill';
  const chain = p.chain === 'none' ? '' : p.chain === 'reorg' ? `, re-org of depth ${p.reorgDepth} at ${p.chainPhase}` : `, RPC down ${(p.downMs / 1000).toFixed(1)} s at ${p.chainPhase}`;
  return kill + chain;
}
