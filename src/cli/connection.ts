import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { DEFAULT_TIMING, type Timing } from '../client/agent.ts';
import type { MqttTransportOptions } from '../transport/mqtt.ts';
import { integer, type Values } from './args.ts';

// Options every long-running command shares: how to log in to the broker, and the
// protocol's timeouts (none is hard-coded); and, for the commands that read the chain,
// where its events start.

/** The block the adjudicator was deployed in (gateway, watchtower, close). */
export const ADJUDICATOR_BLOCK_SPEC = {
  'adjudicator-block': { type: 'string', arg: 'N', help: 'the block the adjudicator was deployed in: on-chain event reads start there', default: '0' },
} as const;

export function adjudicatorBlock(o: { 'adjudicator-block'?: string }): bigint {
  return BigInt(integer(o['adjudicator-block'], 'adjudicator-block') ?? 0);
}

export const CONNECTION_SPECS = {
  'mqtt-username': { type: 'string', arg: 'NAME', help: 'broker login (default: this party’s address, as the ACL expects)' },
  'mqtt-password-env': { type: 'string', arg: 'NAME', help: 'environment variable holding the broker password' },
  'mqtt-ca': { type: 'string', arg: 'FILE', help: 'CA certificate (PEM) for an mqtts:// broker' },
  'mqtt-cert': { type: 'string', arg: 'FILE', help: 'client certificate (PEM), with --mqtt-key' },
  'mqtt-key': { type: 'string', arg: 'FILE', help: 'client key (PEM)' },
  'mqtt-enroll': { type: 'boolean', help: "a Mosquitto whose logins the gateway issues (docs/mqtt): log in with this key's broker password, enrolling it first" },
  'retransmit-ms': { type: 'string', arg: 'MS', help: 'first retransmission of an unanswered message', default: String(DEFAULT_TIMING.retransmitMs) },
  'request-timeout-ms': { type: 'string', arg: 'MS', help: 'how long a request waits for the peer', default: String(DEFAULT_TIMING.requestTimeoutMs) },
} as const;

type ConnectionValues = Values<typeof CONNECTION_SPECS>;

function pem(path: string | undefined, what: string): Buffer | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new ConfigError(`cannot read ${what} ${path}`, { cause });
  }
}

export function mqttLogin(o: ConnectionValues): Pick<MqttTransportOptions, 'username' | 'password' | 'tls' | 'enroll'> {
  const ca = pem(o['mqtt-ca'], '--mqtt-ca');
  const cert = pem(o['mqtt-cert'], '--mqtt-cert');
  const key = pem(o['mqtt-key'], '--mqtt-key');
  return {
    username: o['mqtt-username'],
    password: o['mqtt-password-env'] ? process.env[o['mqtt-password-env']] : undefined,
    tls: ca || cert ? { ca, cert, key } : undefined,
    enroll: o['mqtt-enroll'],
  };
}

export function timing(o: ConnectionValues): Partial<Timing> {
  const retransmitMs = integer(o['retransmit-ms'], 'retransmit-ms')!;
  return { retransmitMs, maxRetransmitMs: 16 * retransmitMs, requestTimeoutMs: integer(o['request-timeout-ms'], 'request-timeout-ms')! };
}
