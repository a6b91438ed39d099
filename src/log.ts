import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs on stderr (stdout stays free for a program's own output). Key
 * material never reaches a logger: Signer serialises to its address only, and these
 * paths are redacted in case a config object is logged whole.
 */
export function createLogger(name: string, level: string = process.env.PICOPAY_LOG ?? 'info'): Logger {
  return pino(
    { name, level, redact: ['privateKey', '*.privateKey', 'password', '*.password', 'keystorePassword', '*.keystorePassword'] },
    pino.destination(2),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
