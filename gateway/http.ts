import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChannelRecord } from '../src/channel/record.ts';
import type { Agent } from '../src/client/agent.ts';
import { ChannelKind } from '../src/model/types.ts';
import { DASHBOARD_HTML } from './dashboard.ts';
import type { Intermediary } from '../src/client/intermediary.ts';
import type { AdmissionLimits } from './admission.ts';
import type { DisputeView } from './disputes.ts';

// The operator's view, on 127.0.0.1: a dashboard page, JSON status, one channel, and
// Prometheus metrics.

export interface StatusSources {
  address: string;
  agent: Agent;
  intermediary: Intermediary;
  /** As last polled. */
  isFunded(id: `0x${string}`): boolean;
  /** Reads the chain if the last read (at most `maxAgeMs` old counts) has not seen the deposits yet. */
  checkFunded(id: `0x${string}`, maxAgeMs?: number): Promise<boolean>;
  /** What the gateway will put in, and for whom. */
  limits: AdmissionLimits;
  /** Its disputes: counters since it started, and the ledger channels it settles on-chain now. */
  disputes?: () => DisputeSummary;
}

export interface DisputeSummary {
  refuted: number;
  started: number;
  settled: number;
  steps: number;
  open: DisputeView[];
}

const json = (v: unknown): string => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? undefined : x), 2);

function channelView(s: StatusSources, c: ChannelRecord, funded = s.isFunded(c.id)) {
  return {
    id: c.id,
    peer: c.peer,
    kind: c.params.kind === ChannelKind.Ledger ? 'ledger' : 'virtual',
    phase: c.phase,
    version: c.current.state.version,
    balances: c.current.state.outcome.balances,
    locked: c.current.state.outcome.locked.map((l) => ({ id: l.id, amounts: l.balances })),
    funded,
  };
}

type Reply = { code: number; body: string; type?: string };

/** Devices poll /channels/<id> while they wait: one chain read a second serves them all. */
const STATUS_READ_MAX_AGE_MS = 1000;

const jsonReply = (code: number, value: unknown): Reply => ({ code, body: json(value) });

/** One Prometheus metric: its HELP and TYPE lines, then a sample per label set (or one without labels). */
function metric(name: string, type: 'gauge' | 'counter', help: string, samples: number | [labels: string, value: number][]): string[] {
  const rows = typeof samples === 'number' ? [['', samples] as const] : samples;
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...rows.map(([labels, value]) => `${name}${labels} ${value}`)];
}

async function route(s: StatusSources, method: string | undefined, url: string): Promise<Reply> {
  if (method !== 'GET') return jsonReply(405, { error: 'GET only' });
  const path = new URL(url, 'http://x').pathname;
  if (path === '/') return { code: 200, body: DASHBOARD_HTML, type: 'text/html; charset=utf-8' };
  if (path === '/status') {
    const channels = s.agent.channels().filter((c) => c.params.kind === ChannelKind.Ledger).map((c) => channelView(s, c));
    return jsonReply(200, { address: s.address, limits: s.limits, ledgerChannels: channels, virtualChannels: s.intermediary.virtualChannels().map((v) => v.id), disputes: s.disputes?.().open ?? [] });
  }
  const m = /^\/channels\/(0x[0-9a-f]{64})$/.exec(path);
  if (m) {
    const id = m[1] as `0x${string}`;
    let channel: ChannelRecord;
    try {
      channel = s.agent.channel(id);
    } catch {
      return jsonReply(404, { error: 'no such channel' });
    }
    // A chain read can fail: then the answer is what the last poll saw, if it saw the deposits;
    // else nobody knows (a gateway just restarted with its RPC away), and a device must not read "gone".
    const funded = await s.checkFunded(id, STATUS_READ_MAX_AGE_MS).catch(() => (s.isFunded(id) ? true : null));
    if (funded === null) return jsonReply(503, { error: 'cannot read the chain now' });
    return jsonReply(200, channelView(s, channel, funded));
  }
  if (path === '/metrics') {
    const ledger = s.agent.channels().filter((c) => c.params.kind === ChannelKind.Ledger);
    const d = s.disputes?.() ?? { refuted: 0, started: 0, settled: 0, steps: 0, open: [] };
    const lines = [
      ...metric('picopay_ledger_channels', 'gauge', 'Ledger channels by phase.', (['opening', 'open', 'final'] as const).map((p) => [`{phase="${p}"}`, ledger.filter((c) => c.phase === p).length])),
      ...metric('picopay_ledger_channels_funded', 'gauge', 'Ledger channels funded on-chain.', ledger.filter((c) => s.isFunded(c.id)).length),
      ...metric('picopay_virtual_channels', 'gauge', 'Virtual channels the gateway funds now.', s.intermediary.virtualChannels().length),
      ...metric('picopay_disputes_refuted_total', 'counter', 'Stale registrations the gateway answered with a newer state.', d.refuted),
      ...metric('picopay_disputes_started_total', 'counter', 'Ledger channels the gateway began to settle on-chain.', d.started),
      ...metric('picopay_disputes_settled_total', 'counter', 'Ledger channels settled on-chain: concluded, every virtual channel released.', d.settled),
      ...metric('picopay_disputes_steps_total', 'counter', 'Transactions of on-chain settlements (register, conclude, resolve, release).', d.steps),
      ...metric('picopay_disputes_open', 'gauge', 'Ledger channels being settled on-chain now.', d.open.length),
    ];
    return { code: 200, body: `${lines.join('\n')}\n`, type: 'text/plain; version=0.0.4' };
  }
  return jsonReply(404, { error: 'not found', paths: ['/', '/status', '/channels/<id>', '/metrics'] });
}

export async function startStatusServer(s: StatusSources, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    // Whatever a client sends, it gets an answer and the gateway carries on.
    route(s, req.method, req.url ?? '/')
      .catch((err: unknown) => jsonReply(400, { error: String(err) }))
      .then(({ code, body, type }) => {
        res.writeHead(code, { 'content-type': type ?? 'application/json' });
        res.end(body);
      })
      .catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${bound}`, close: () => new Promise((r) => server.close(() => r())) };
}
