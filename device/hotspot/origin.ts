// A tiny HTTP origin for demos and tests: GET /bytes/<n> streams n bytes of deterministic
// pseudo-random content (so a download can be checked by its hash) with a content-length,
// from an offset too (`Range: bytes=k-`), so that an interrupted download can continue.
import { createHash } from 'node:crypto';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const CHUNK_BYTES = 64 * 1024;
/** Largest body served, so that a typo cannot stream for hours. */
const MAX_BYTES = 1 << 30;

/** The bytes /bytes/<total> serves, in chunks (xorshift32 from a fixed seed). */
export function* pseudoRandomChunks(total: number, chunkBytes = CHUNK_BYTES): Generator<Buffer> {
  let state = 0x9e3779b9;
  for (let offset = 0; offset < total; offset += chunkBytes) {
    const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, total - offset));
    for (let i = 0; i < chunk.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      chunk[i] = state & 0xff;
    }
    yield chunk;
  }
}

/** Hex SHA-256 of what /bytes/<total> serves. */
export function pseudoRandomSha256(total: number): string {
  const hash = createHash('sha256');
  for (const chunk of pseudoRandomChunks(total)) hash.update(chunk);
  return hash.digest('hex');
}

/** A pause in every body at one offset, for tests that break something mid-download. */
export interface Hold {
  /** Resolves once a body has been served up to the offset. */
  reached: Promise<void>;
  /** Lets every held body go on; later bodies are not held. */
  release(): void;
}

export interface Origin {
  port: number;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** Holds every body once it has served `offset` bytes of it, until released. */
  hold(offset: number): Hold;
  /** Body bytes handed to the network so far, all requests together. */
  readonly sent: number;
  close(): Promise<void>;
}

/** The body's bytes from `start` on, held at `hold` if given. */
async function* bodyFrom(total: number, start: number, hold?: { offset: number; reach(): void; released: Promise<void> }): AsyncGenerator<Buffer> {
  let offset = 0;
  for (const chunk of pseudoRandomChunks(total)) {
    const end = offset + chunk.length;
    let rest = chunk.subarray(Math.max(0, start - offset));
    offset = end;
    if (hold && end - rest.length < hold.offset && hold.offset <= end) {
      const before = rest.length - (end - hold.offset);
      yield rest.subarray(0, before);
      rest = rest.subarray(before);
      hold.reach();
      await hold.released;
    }
    if (rest.length > 0) yield rest;
  }
}

const RANGE = /^bytes=(\d+)-$/;

export async function startOrigin(options: { host?: string; port?: number } = {}): Promise<Origin> {
  let held: { offset: number; reach(): void; released: Promise<void> } | undefined;
  let sent = 0;
  const counted = async function* (chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of chunks) {
      sent += chunk.length;
      yield chunk;
    }
  };
  const server: Server = http.createServer((req, res) => {
    const match = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    const total = Number(match?.[1]);
    const refusal = !match ? 404 : req.method !== 'GET' ? 405 : total > MAX_BYTES ? 413 : undefined;
    if (refusal !== undefined) {
      res.writeHead(refusal).end();
      return;
    }
    const range = RANGE.exec(String(req.headers.range ?? ''));
    const start = range ? Number(range[1]) : 0;
    if (range && start >= total) {
      res.writeHead(416, { 'content-range': `bytes */${total}` }).end();
      return;
    }
    if (range) res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': total - start, 'content-range': `bytes ${start}-${total - 1}/${total}` });
    else res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    pipeline(Readable.from(counted(bodyFrom(total, start, held))), res).catch(() => {
      // The client went away mid-body: nothing to clean up beyond what pipeline did.
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  return {
    port,
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    get sent() {
      return sent;
    },
    hold(offset) {
      let reach!: () => void;
      let release!: () => void;
      const reached = new Promise<void>((resolve) => (reach = resolve));
      const released = new Promise<void>((resolve) => (release = resolve));
      held = { offset, reach, released };
      return {
        reached,
        release: () => {
          held = undefined;
          release();
        },
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
