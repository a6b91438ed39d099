// The hotspot client: downloads through the metered proxy and pays as bytes arrive,
// one unit ahead. It counts exactly what the proxy meters (tunnel bytes both ways for
// CONNECT, body bytes for plain forwarding), so the two sides agree on what is due.
// Each request to the proxy first fetches a challenge and answers it with the client's
// key (auth.ts): one round trip more per download, in exchange for a header nobody can
// forge or replay.
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import http, { type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { ConfigError } from '../../src/errors.ts';
import { authDigest, formatCredentials, parseChallenge } from './auth.ts';
import { DownloadInterruptedError, HttpStatusError, ServedClaimRefusedError } from './errors.ts';
import { createTariff, SERVED_HEADER, unitsDue, type Tariff } from './meter.ts';
import type { PaymentsOut } from './payments.ts';

export interface PayingClientOptions {
  proxyUrl: string;
  /** This client's 0x address, as the payment layer knows it. */
  clientAddress: string;
  /** The virtual channel its payments go through (0x id): the proxy meters each channel on its own. */
  channel: string;
  /** Bytes per unit (default 100 KB); must match the hotspot's. */
  unitBytes?: number;
  /** Price of one unit, in wei; must match the hotspot's. */
  price: bigint;
  /** Units paid ahead of the bytes used (default 1). */
  prepaidUnits?: number;
  /** What this channel paid before this client (an earlier run's vouchers), in wei. */
  paid?: bigint;
  /** A download with no byte for this long is interrupted (default 30 s). */
  idleTimeoutMs?: number;
  payments: PaymentsOut;
  /** Signs a 32-byte digest with clientAddress's key: 65 bytes r ‖ s ‖ v (a Signer's sign). */
  sign: (digest: Uint8Array) => Uint8Array;
}

export interface DownloadProgress {
  /** Body bytes of this download received so far (earlier attempts included). */
  bytes: number;
  /** The body's content-length, when the origin sent one. */
  totalBytes: number | undefined;
  /** Bytes metered for this client so far, all downloads included. */
  meteredBytes: number;
  /** Units paid for so far (vouchers handed to the payment layer), all downloads included. */
  unitsPaid: number;
  /** Vouchers sent per second since this download started. */
  vouchersPerSec: number;
}

export interface DownloadOptions {
  /** 'forward' (default): `GET http://…` to the proxy; 'connect': through a CONNECT tunnel. */
  mode?: 'forward' | 'connect';
  onProgress?: (progress: DownloadProgress) => void;
  /** What earlier attempts at this URL received: the download asks for the rest, and adds to it. */
  received?: Received;
}

/** A body received so far, across attempts. */
export interface Received {
  bytes: number;
  hash: Hash;
  /** The body's length, once known. */
  total?: number;
  /** Its ETag (else Last-Modified): a resumed request asks for the rest only of that version (If-Range). */
  validator?: string;
}

export function nothingReceived(): Received {
  return { bytes: 0, hash: createHash('sha256') };
}

/** With no byte for this long, a download is given up as interrupted (a link gone without a reset). */
const IDLE_TIMEOUT_MS = 30_000;

export interface DownloadResult {
  /** Body bytes received. */
  bytes: number;
  /** Hex SHA-256 of the body. */
  sha256: string;
  /** As in DownloadProgress: totals for this client. */
  meteredBytes: number;
  unitsPaid: number;
  /** Vouchers sent during this download. */
  vouchers: number;
}

export interface PayingClient {
  download(url: string, options?: DownloadOptions): Promise<DownloadResult>;
  readonly meteredBytes: number;
  readonly unitsPaid: number;
  readonly vouchers: number;
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;


export function createPayingClient(options: PayingClientOptions): PayingClient {
  if (!ADDRESS.test(options.clientAddress)) throw new ConfigError(`clientAddress must be a 0x address, got ${options.clientAddress}`);
  const tariff = createTariff({ unitBytes: options.unitBytes, pricePerUnit: options.price, prepaidUnits: options.prepaidUnits });
  const proxy = new URL(options.proxyUrl);
  // The name the signature binds: the proxy checks it is its own.
  const proxyAuthority = `${proxy.hostname}:${proxy.port || 80}`;
  const address = options.clientAddress.toLowerCase();
  const channel = options.channel.toLowerCase();
  if (!/^0x[0-9a-f]{64}$/.test(channel)) throw new ConfigError(`channel must be a 0x channel id, got ${options.channel}`);
  const payer = new Payer(tariff, options.payments, options.paid ?? 0n);

  async function download(url: string, { mode = 'forward', onProgress, received = nothingReceived() }: DownloadOptions = {}): Promise<DownloadResult> {
    const target = new URL(url);
    if (target.protocol !== 'http:') throw new ConfigError(`only http:// URLs can be downloaded, got ${url}`);
    const started = performance.now();
    const vouchersBefore = payer.vouchers;
    // A payment that fails aborts the download: the proxy would stop it anyway.
    const failed = new AbortController();
    const pay = (bytes: number) => payer.use(bytes)?.catch((error: unknown) => failed.abort(error));
    pay(0); // the units ahead, before the first byte

    let opened: Opened | undefined;
    let response: IncomingMessage | undefined;
    try {
      const from = received.bytes;
      const resume = from > 0 ? { range: `bytes=${from}-`, ...(received.validator ? { 'if-range': received.validator } : {}) } : {};
      opened = mode === 'connect' ? await openTunnel(target, failed.signal, resume) : await openForwarding(target, failed.signal, resume);
      const { request, metered } = opened;
      // A link gone without a reset (a hotspot losing power) must not hold the download for ever.
      const idle = () => request.destroy(new DownloadInterruptedError(url, received.bytes, received.total));
      request.setTimeout(options.idleTimeoutMs ?? IDLE_TIMEOUT_MS, idle);
      opened.socket?.setTimeout(options.idleTimeoutMs ?? IDLE_TIMEOUT_MS, idle);
      let totalBytes: number | undefined;
      let bytes = 0;
      let counted = 0;
      const account = () => {
        const now = metered(bytes);
        pay(now - counted);
        counted = now;
        const seconds = (performance.now() - started) / 1000;
        onProgress?.({ bytes: received.bytes, totalBytes, meteredBytes: payer.meteredBytes, unitsPaid: payer.unitsPaid, vouchersPerSec: seconds > 0 ? (payer.vouchers - vouchersBefore) / seconds : 0 });
      };
      // What we send is metered too, and the proxy may wait for its payment before it answers.
      request.once('finish', account);
      request.end();
      [response] = (await once(request, 'response')) as [IncomingMessage];
      const status = response.statusCode ?? 0;
      if (status === 402) payer.served(servedHeader(response.headers[SERVED_HEADER]), url);
      const range = contentRange(response.headers['content-range']);
      // All of it had come before the link broke: nothing is left to ask for.
      if (status === 416 && from > 0 && range?.total === from && received.total === from) {
        return { bytes: from, sha256: received.hash.digest('hex'), meteredBytes: payer.meteredBytes, unitsPaid: payer.unitsPaid, vouchers: payer.vouchers - vouchersBefore };
      }
      // The rest of the same body, or (an origin that ignores ranges, or a new version) all of it again.
      const continues = from > 0 && status === 206 && range?.start === from && (received.total === undefined || range.total === received.total);
      if (status !== 200 && !continues) throw new HttpStatusError(status, url);
      const length = response.headers['content-length'] === undefined ? undefined : Number(response.headers['content-length']);
      if (!continues) {
        Object.assign(received, nothingReceived());
        received.total = length;
        // Only a strong ETag: a server answers a weak one (or a date) in If-Range with the whole body again.
        const etag = response.headers.etag;
        received.validator = typeof etag === 'string' && etag.startsWith('"') ? etag : undefined;
      }
      totalBytes = received.total ?? (length === undefined ? undefined : received.bytes + length);
      account();
      try {
        for await (const chunk of response as AsyncIterable<Buffer>) {
          received.hash.update(chunk);
          received.bytes += chunk.length;
          bytes += chunk.length;
          account();
        }
      } catch (error) {
        throw new DownloadInterruptedError(url, received.bytes, totalBytes, { cause: error });
      }
      if (!response.complete || (totalBytes !== undefined && received.bytes !== totalBytes)) throw new DownloadInterruptedError(url, received.bytes, totalBytes);
      return { bytes: received.bytes, sha256: received.hash.digest('hex'), meteredBytes: payer.meteredBytes, unitsPaid: payer.unitsPaid, vouchers: payer.vouchers - vouchersBefore };
    } catch (error) {
      throw failed.signal.aborted ? failed.signal.reason : error;
    } finally {
      response?.destroy();
      opened?.request.destroy();
      opened?.socket?.destroy();
    }
  }

  /**
   * A Proxy-Authorization good for one request: asks the proxy for a nonce (it answers a
   * request without credentials with 407 and a challenge) and signs it.
   */
  async function authorization(method: string, path: string, host: string, target: URL, signal: AbortSignal): Promise<string> {
    const probe = http.request({ host: proxy.hostname, port: proxy.port, method, path, headers: { host }, agent: false, signal });
    probe.setTimeout(options.idleTimeoutMs ?? IDLE_TIMEOUT_MS, () => probe.destroy(new DownloadInterruptedError(target.href, 0, undefined)));
    probe.end();
    try {
      // Node reports any answer to a CONNECT as 'connect', with the socket handed over.
      const [answer, socket] = (await once(probe, method === 'CONNECT' ? 'connect' : 'response')) as [IncomingMessage, Socket?];
      socket?.destroy();
      answer.destroy();
      const nonce = parseChallenge(answer.headers['proxy-authenticate']);
      if (answer.statusCode !== 407 || nonce === undefined) throw new HttpStatusError(answer.statusCode ?? 0, target.href);
      return formatCredentials({ address, channel, nonce, sig: options.sign(authDigest(nonce, proxyAuthority, channel)) });
    } finally {
      probe.destroy();
    }
  }

  // Plain forwarding: the proxy meters the body, so the body is what we count.
  async function openForwarding(target: URL, signal: AbortSignal, resume: Record<string, string>): Promise<Opened> {
    const proxyAuthorization = await authorization('GET', target.href, target.host, target, signal);
    const request = http.request({
      host: proxy.hostname,
      port: proxy.port,
      method: 'GET',
      path: target.href,
      headers: { host: target.host, 'proxy-authorization': proxyAuthorization, ...resume },
      agent: false,
      signal,
    });
    return { request, metered: (bodyBytes) => bodyBytes };
  }

  // CONNECT: the proxy meters every tunnel byte both ways, so we count the socket's.
  async function openTunnel(target: URL, signal: AbortSignal, resume: Record<string, string>): Promise<Opened> {
    const authority = `${target.hostname}:${target.port || 80}`;
    const proxyAuthorization = await authorization('CONNECT', authority, authority, target, signal);
    const connect = http.request({
      host: proxy.hostname,
      port: proxy.port,
      method: 'CONNECT',
      path: authority,
      headers: { host: authority, 'proxy-authorization': proxyAuthorization },
      agent: false,
      signal,
    });
    connect.end();
    const [answer, socket, head] = (await once(connect, 'connect')) as [IncomingMessage, Socket, Buffer];
    if (answer.statusCode !== 200) {
      if (answer.statusCode === 402) payer.served(servedHeader(answer.headers[SERVED_HEADER]), target.href);
      socket.destroy();
      throw new HttpStatusError(answer.statusCode ?? 0, target.href);
    }
    // Bytes read past the proxy's 200 response already belong to the tunnel.
    const readBefore = socket.bytesRead - head.length;
    const writtenBefore = socket.bytesWritten;
    if (head.length > 0) socket.unshift(head);
    const request = http.request(target, { createConnection: () => socket, headers: { connection: 'close', ...resume }, signal });
    return { request, socket, metered: () => socket.bytesRead - readBefore + (socket.bytesWritten - writtenBefore) };
  }

  return {
    download,
    get meteredBytes() {
      return payer.meteredBytes;
    },
    get unitsPaid() {
      return payer.unitsPaid;
    },
    get vouchers() {
      return payer.vouchers;
    },
  };
}

function servedHeader(value: string | string[] | undefined): number | undefined {
  const n = typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
  return n !== undefined && Number.isSafeInteger(n) ? n : undefined;
}

/** `bytes a-b/n` (a range served) or `bytes *\/n` (none: a 416), as start and total. */
function contentRange(header: string | undefined): { start?: number; total?: number } | undefined {
  const match = /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(header ?? '');
  if (!match) return undefined;
  return { start: match[1] === undefined ? undefined : Number(match[1]), total: match[2] === '*' ? undefined : Number(match[2]) };
}

/** A download's request, not yet ended. */
interface Opened {
  request: http.ClientRequest;
  /** Bytes the proxy meters for this download so far, given the body bytes received. */
  metered: (bodyBytes: number) => number;
  socket?: Socket;
}

/**
 * Keeps this client paid up: unitsDue(bytes used) units at all times. One voucher is in
 * flight at a time, always for the latest amount due: vouchers are cumulative, so one
 * skipped while another was in flight loses nothing.
 */
class Payer {
  meteredBytes = 0;
  unitsPaid = 0;
  vouchers = 0;
  readonly #tariff: Tariff;
  readonly #payments: PaymentsOut;
  #due = 0n;
  #sent = 0n;
  #sending: Promise<void> | undefined;
  /** Bytes this client counted as used on the hotspot's word, beyond what it received (see served). */
  #believed = 0;
  /** Bytes this client metered itself (received, and sent for CONNECT). */
  #received = 0;

  /**
   * `paid`: what the channel paid before this client (an earlier run): all of it counts as
   * used, since the hotspot may have served it all, so the client pays its units ahead again.
   */
  constructor(tariff: Tariff, payments: PaymentsOut, paid: bigint) {
    this.#tariff = tariff;
    this.#payments = payments;
    this.#due = paid;
    this.#sent = paid;
    this.unitsPaid = Number(paid / tariff.pricePerUnit);
    this.meteredBytes = this.unitsPaid * tariff.unitBytes;
  }

  /**
   * The hotspot, refusing with 402, says it has served `bytes` of this channel: more than
   * this client received when bytes were lost in flight as a link broke, or when a restart
   * rounded its count up to the unit's end. Without believing it, the hotspot would wait for
   * a payment and the client for a byte. Believed up to what was paid for (it cannot have
   * served more), and within a budget: 3 units, or a tenth of the bytes this client itself
   * received, so that a hotspot that claims it at every refusal gains that much and no
   * more. A claim beyond the budget ends the download (ServedClaimRefusedError).
   */
  served(bytes: number | undefined, url: string): void {
    const unit = this.#tariff.unitBytes;
    const paidFor = Number(this.#sent / this.#tariff.pricePerUnit) * unit;
    const extra = Math.min(bytes ?? 0, paidFor) - this.meteredBytes;
    if (extra <= 0) return;
    const budget = Math.max(3 * unit, Math.floor(this.#received / 10));
    if (this.#believed + extra > budget) throw new ServedClaimRefusedError(`${url}: the hotspot says it served ${extra} bytes more than this client received, beyond the ${budget - this.#believed} it still believes`);
    this.#believed += extra;
    this.meteredBytes += extra;
  }

  /** Adds `bytes` used and pays what is due (a payment that failed is tried again); returns the voucher round it started, if any. */
  use(bytes: number): Promise<void> | undefined {
    this.meteredBytes += bytes;
    this.#received += bytes;
    const due = unitsDue(this.#tariff, this.meteredBytes);
    if (due > this.unitsPaid) {
      this.unitsPaid = due;
      this.#due = BigInt(due) * this.#tariff.pricePerUnit;
    }
    if (this.#sent >= this.#due || this.#sending !== undefined) return undefined;
    this.#sending = this.#flush().finally(() => {
      this.#sending = undefined;
    });
    return this.#sending;
  }

  async #flush(): Promise<void> {
    while (this.#sent < this.#due) {
      const amount = this.#due;
      this.vouchers++;
      await this.#payments.payUpTo(amount);
      this.#sent = amount;
    }
  }
}
