import { setTimeout as sleep } from 'node:timers/promises';
import * as AbiFunction from 'ox/AbiFunction';
import type { ChannelRecord } from '../src/channel/record.ts';
import { ChainReadError, ConfigError, ProtocolTimeoutError, TransportError } from '../src/errors.ts';
import { decodeHoldings, depositsCover, type Holdings } from '../src/model/holdings.ts';
import type { Address } from '../src/model/types.ts';

// Whether a device's ledger channel is funded on-chain, that is whether the adjudicator
// holds both deposits. Until it is, the gateway's side of the channel is only a promise,
// and so is every payment a virtual channel brings in through it. The device reads the
// chain itself over plain JSON-RPC (no viem, no contract code), or, with no RPC URL,
// asks the gateway's status API and trusts its answer. Every request has a deadline: a
// server that accepts and never answers must not hold the device past its fund timeout.

/** What a check needs of the ledger channel: its id and its (conserved) totals. */
export type LedgerView = Pick<ChannelRecord, 'id' | 'current'>;

export interface FundingSource {
  /** What the answer rests on, for logs. */
  readonly name: string;
  /** `signal` aborts the check's requests (waitFunded passes its deadline). */
  isFunded(ledger: LedgerView, signal?: AbortSignal): Promise<boolean>;
}

/** Longest one request may take: a hung call is given up and asked again while time is left. */
const CALL_TIMEOUT_MS = 10_000;

function callSignal(signal: AbortSignal | undefined): AbortSignal {
  const own = AbortSignal.timeout(CALL_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, own]) : own;
}

const holdingsFn = AbiFunction.from('function holdings(bytes32 channelId, address asset) view returns (uint256)');

async function rpc(url: string, method: string, params: unknown[], signal: AbortSignal | undefined): Promise<unknown> {
  let body: { result?: unknown; error?: { message?: string } };
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      signal: callSignal(signal),
    });
    body = (await res.json()) as typeof body;
  } catch (cause) {
    throw new ChainReadError(`${method} at ${url} failed`, { cause });
  }
  if (body.error || body.result === undefined) throw new ChainReadError(`${method} at ${url}: ${body.error?.message ?? 'no result'}`);
  return body.result;
}

function hexQuantity(value: unknown, what: string): bigint {
  if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{1,64}$/.test(value)) throw new ChainReadError(`${what}: not a quantity`);
  return BigInt(value);
}

/**
 * Reads the adjudicator's holdings for the channel `confirmations` blocks below the head,
 * so that a re-org shallower than that cannot fake a deposit. The node must serve
 * `chainId` (checked once): the same adjudicator address on another chain proves nothing.
 */
export function chainFunding(o: { rpcUrl: string; chainId: bigint; adjudicator: Address; confirmations: number }): FundingSource {
  if (!Number.isInteger(o.confirmations) || o.confirmations < 1) throw new ConfigError(`confirmations must be an integer ≥ 1, got ${o.confirmations}`);
  let chainChecked = false;
  const checkChain = async (signal: AbortSignal | undefined): Promise<void> => {
    if (chainChecked) return;
    const served = hexQuantity(await rpc(o.rpcUrl, 'eth_chainId', [], signal), 'eth_chainId');
    if (served !== o.chainId) throw new ChainReadError(`${o.rpcUrl} serves chain ${served}, expected ${o.chainId}`);
    chainChecked = true;
  };
  return {
    name: `chain ${o.rpcUrl}`,
    async isFunded(ledger, signal) {
      await checkChain(signal);
      const head = hexQuantity(await rpc(o.rpcUrl, 'eth_blockNumber', [], signal), 'eth_blockNumber');
      const depth = BigInt(o.confirmations - 1);
      if (head < depth) return false;
      const block = `0x${(head - depth).toString(16)}`;
      const outcome = ledger.current.state.outcome;
      const held: Holdings[] = [];
      for (const asset of outcome.assets) {
        const data = AbiFunction.encodeData(holdingsFn, [ledger.id, asset]);
        const raw = await rpc(o.rpcUrl, 'eth_call', [{ to: o.adjudicator, data }, block], signal);
        if (typeof raw !== 'string' || !/^0x([0-9a-fA-F]{64})$/.test(raw)) throw new ChainReadError('eth_call holdings: not one 32-byte word');
        held.push(decodeHoldings(AbiFunction.decodeResult(holdingsFn, raw as `0x${string}`)));
      }
      return depositsCover(outcome, held);
    },
  };
}

/** Asks the gateway's status API (`GET /channels/<id>`): trusts the gateway. */
export function gatewayFunding(statusUrl: string): FundingSource {
  return {
    name: `gateway ${statusUrl}`,
    async isFunded(ledger, signal) {
      const url = `${statusUrl}/channels/${ledger.id}`;
      let res: Response;
      try {
        res = await fetch(url, { signal: callSignal(signal) });
      } catch (cause) {
        throw new TransportError(`GET ${url} failed`, { cause });
      }
      // 404: the gateway has no such channel. Anything else but 200 says nothing of the deposits.
      if (res.status === 404) return false;
      if (!res.ok) throw new TransportError(`GET ${url}: HTTP ${res.status}`);
      const body = (await res.json().catch(() => undefined)) as { funded?: unknown } | undefined;
      if (typeof body?.funded !== 'boolean') throw new TransportError(`GET ${url}: no funded flag in the answer`);
      return body.funded;
    },
  };
}

/**
 * Checks every `pollMs` until the ledger channel is funded; a source that fails is asked
 * again. Rejects with ProtocolTimeoutError once `timeoutMs` have passed, even in the middle
 * of a check.
 */
export async function waitFunded(source: FundingSource, ledger: LedgerView, o: { timeoutMs: number; pollMs?: number; onError?: (err: unknown) => void }): Promise<void> {
  const timeout = new ProtocolTimeoutError(`ledger channel ${ledger.id} not funded within ${o.timeoutMs} ms (${source.name})`);
  const deadline = AbortSignal.timeout(o.timeoutMs);
  const expired = new Promise<never>((_, reject) => deadline.addEventListener('abort', () => reject(timeout), { once: true }));
  for (;;) {
    try {
      // The sources abort at the deadline; the race holds even for one that does not.
      if (await Promise.race([source.isFunded(ledger, deadline), expired])) return;
    } catch (err) {
      if (deadline.aborted) throw timeout;
      o.onError?.(err);
    }
    await Promise.race([sleep(o.pollMs ?? 250), expired]);
  }
}

export interface FundingWatch {
  /** Whether the deposits were there at the last check. */
  readonly funded: boolean;
  stop(): void;
}

/**
 * After the channel was seen funded: a re-org deeper than the confirmation depth can take
 * a deposit back, so the deposits are read again every `pollMs` until `windowMs` after
 * `since` (when they were first seen). `onChange` hears of each change (false: stop paying
 * and serving; true: they are back). While unfunded the watch goes on past the window.
 */
export function watchFunding(source: FundingSource, ledger: LedgerView, o: { since: number; windowMs: number; pollMs: number; onChange: (funded: boolean) => void; onError?: (err: unknown) => void }): FundingWatch {
  let funded = true;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const check = async (): Promise<void> => {
    if (stopped) return;
    if (funded && Date.now() - o.since >= o.windowMs) return;
    try {
      const now = await source.isFunded(ledger);
      if (!stopped && now !== funded) {
        funded = now;
        o.onChange(now);
      }
    } catch (err) {
      o.onError?.(err);
    }
    if (stopped) return;
    timer = setTimeout(() => void check(), o.pollMs);
    timer.unref();
  };
  void check();
  return {
    get funded() {
      return funded;
    },
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
