// Errors of the metered proxy and its paying client. They extend PicopayError so that
// callers can tell them apart by `code`, like every other picopay error.
import { PicopayError } from '../../src/errors.ts';

/** A caller tried to serve more bytes than the client has paid for (a bug in the caller). */
export class AllowanceExceededError extends PicopayError {
  readonly code = 'HOTSPOT_ALLOWANCE_EXCEEDED';
  constructor(readonly requested: number, readonly allowance: number) {
    super(`cannot serve ${requested} bytes: only ${allowance} are paid for`);
  }
}

/** The proxy cut a client off because no payment arrived while its traffic was paused. */
export class CutOffError extends PicopayError {
  readonly code = 'HOTSPOT_CUT_OFF';
  constructor(readonly client: string, readonly idleCutoffMs: number) {
    super(`client ${client} cut off: no payment within ${idleCutoffMs} ms`);
  }
}

/** The proxy or the origin answered a download with something other than success. */
export class HttpStatusError extends PicopayError {
  readonly code = 'HOTSPOT_HTTP_STATUS';
  constructor(readonly status: number, readonly url: string) {
    super(`${url}: HTTP ${status}`);
  }
}

/** The connection closed before the whole body arrived (for example: the client was cut off). */
export class DownloadInterruptedError extends PicopayError {
  readonly code = 'HOTSPOT_INTERRUPTED';
  constructor(readonly url: string, readonly received: number, readonly expected: number | undefined, options?: { cause?: unknown }) {
    super(`${url}: connection closed after ${received} of ${expected ?? 'unknown'} bytes`, options);
  }
}

/** The hotspot says it served more than this client received, beyond what the client believes (its budget): a hotspot that lies, or a link too poor to go on. */
export class ServedClaimRefusedError extends PicopayError {
  readonly code = 'HOTSPOT_CLAIM_REFUSED';
}

/** The hotspot's tariff could not be had, was not signed by the hotspot, or asks more than the payer will pay. */
export class TariffRefusedError extends PicopayError {
  readonly code = 'HOTSPOT_TARIFF_REFUSED';
}
