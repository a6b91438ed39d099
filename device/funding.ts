import * as AbiFunction from 'ox/AbiFunction';
import type { ChannelRecord } from '../src/channel/record.ts';
import { ChainReadError, ProtocolTimeoutError } from '../src/errors.ts';
import { totals } from '../src/model/allocation.ts';
import type { Address } from '../src/model/types.ts';

// Whether a device's ledger channel is funded on-chain, that is whether the adjudicator
// holds both deposits. Until it is, the gateway's side of the channel is only a promise,
// and so is every payment a virtual channel brings in through it. The device reads the
// chain itself over plain JSON-RPC (no viem, no contract code), or, with no RPC URL,
// asks the gateway's status API and trusts its answer.

/** What a check needs of the ledger channel: its id and its (conserved) totals. */
export type LedgerView = Pick<ChannelRecord, 'id' | 'current'>;

export interface FundingSource {
  /** What the answer rests on, for logs. */
  readonly name: string;
  isFunded(ledger: LedgerView): Promise<boolean>;
}

const holdingsFn = AbiFunction.from('function holdings(bytes32 channelId, address asset) view returns (uint256)');

/** Bit 255 of a holdings slot marks a concluded channel (see contracts/Adjudicator.sol). */
const CONCLUDED = 1n << 255n;

async function rpc(url: string, method: string, params: unknown[]): Promise<unknown> {
  let body: { result?: unknown; error?: { message?: string } };
  try {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
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
 * so that a re-org shallower than that cannot fake a deposit.
 */
export function chainFunding(o: { rpcUrl: string; adjudicator: Address; confirmations: number }): FundingSource {
  if (!Number.isInteger(o.confirmations) || o.confirmations < 1) throw new RangeError('confirmations must be an integer ≥ 1');
  return {
    name: `chain ${o.rpcUrl}`,
    async isFunded(ledger) {
      const head = hexQuantity(await rpc(o.rpcUrl, 'eth_blockNumber', []), 'eth_blockNumber');
      const depth = BigInt(o.confirmations - 1);
      if (head < depth) return false;
      const block = `0x${(head - depth).toString(16)}`;
      const outcome = ledger.current.state.outcome;
      const need = totals(outcome);
      for (let a = 0; a < outcome.assets.length; a++) {
        const data = AbiFunction.encodeData(holdingsFn, [ledger.id, outcome.assets[a]!]);
        const raw = await rpc(o.rpcUrl, 'eth_call', [{ to: o.adjudicator, data }, block]);
        if (typeof raw !== 'string' || !/^0x([0-9a-fA-F]{64})$/.test(raw)) throw new ChainReadError('eth_call holdings: not one 32-byte word');
        const held = AbiFunction.decodeResult(holdingsFn, raw as `0x${string}`);
        if (held >= CONCLUDED || held < need[a]!) return false;
      }
      return true;
    },
  };
}

/** Asks the gateway's status API (`GET /channels/<id>`): trusts the gateway. */
export function gatewayFunding(statusUrl: string): FundingSource {
  return {
    name: `gateway ${statusUrl}`,
    async isFunded(ledger) {
      const res = await fetch(`${statusUrl}/channels/${ledger.id}`);
      return res.ok && ((await res.json()) as { funded?: boolean }).funded === true;
    },
  };
}

/** Checks every `pollMs` until the ledger channel is funded; a source that fails is asked again. */
export async function waitFunded(source: FundingSource, ledger: LedgerView, o: { timeoutMs: number; pollMs?: number; onError?: (err: unknown) => void }): Promise<void> {
  const end = Date.now() + o.timeoutMs;
  for (;;) {
    try {
      if (await source.isFunded(ledger)) return;
    } catch (err) {
      o.onError?.(err);
    }
    if (Date.now() >= end) throw new ProtocolTimeoutError(`ledger channel ${ledger.id} not funded within ${o.timeoutMs} ms (${source.name})`);
    await new Promise((r) => setTimeout(r, o.pollMs ?? 250));
  }
}
