/** The slice of a pino logger the transports use; pass a pino logger or child as is. */
export interface TransportLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export const silentLogger: TransportLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
};
