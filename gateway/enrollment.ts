import { randomBytes } from 'node:crypto';
import { connectAsync, type MqttClient } from 'mqtt';
import type { Logger } from '../src/log.ts';
import { brokerAuthority, verifyBrokerPassword } from '../src/transport/login.ts';
import type { MqttTlsOptions } from '../src/transport/mqtt.ts';
import { ENROLL_FILTER, ENROLL_LOGIN, enrolledBy, inboxFilter, presenceTopic, sessionIdOf, TOPIC_ROOT } from '../src/transport/topics.ts';
import type { Address } from '../src/model/types.ts';

// Device logins on a Mosquitto with the dynamic-security plugin, issued by the gateway.
// Mosquitto cannot check a signature, so a device logs in with its key's fixed password
// for this broker (src/transport/login.ts) and, while it has no login, publishes that
// password on its enrollment topic with the public enrollment login (ENROLL_LOGIN), which
// may publish there and do nothing else: not subscribe to anything, not read the
// enrollment topic, and use no client id but its own. The gateway, logged in as the
// plugin's admin, reads enrollments, checks that the password is the named address's
// signature for this broker, and creates the login, bound to the address's session id
// (so nobody else can take over its session and its queue), with a role of its own: read
// its own inbox and presence, write to any inbox as itself, announce its own presence.
// A forged enrollment creates nothing. Anonymous logins stay off (mosquitto.conf).

const CONTROL = '$CONTROL/dynamic-security/v1';
const ENROLL_ROLE = 'picopay-enroll';
/** An enrollment is a password and nothing else: anything longer is not one. */
const MAX_ENROLLMENT_BYTES = 200;

export interface EnrollmentOptions {
  /** The broker's URL as devices dial it (their passwords name its host:port). */
  url: string;
  /** Further host:port names devices reach the broker by. */
  names?: string[];
  /** The dynamic-security admin login (mosquitto_ctrl dynsec init). */
  admin: { username: string; password: string };
  tls?: MqttTlsOptions;
  logger: Logger;
}

export interface Enrollment {
  /** Creates (or resets) the login of `address` with `password`; for the gateway's own. */
  issue(address: Address, password: string): Promise<void>;
  close(): Promise<void>;
}

/** Connects as the admin, makes sure the enrollment login exists and may do nothing but enroll, and issues logins. */
export async function startEnrollment(o: EnrollmentOptions): Promise<Enrollment> {
  const authorities = [brokerAuthority(o.url), ...(o.names ?? [])];
  const client = await connectAsync(o.url, { protocolVersion: 4, clientId: `picopay-gateway-admin-${randomBytes(4).toString('hex')}`, clean: true, username: o.admin.username, password: o.admin.password, ...o.tls });
  const commands = controlChannel(client);
  // Idempotent: on a second start these exist and the plugin says so; nothing else changes.
  await commands.send([
    { command: 'createRole', rolename: ENROLL_ROLE, acls: [{ acltype: 'publishClientSend', topic: ENROLL_FILTER, allow: true }] },
    { command: 'createClient', username: ENROLL_LOGIN, password: ENROLL_LOGIN, clientid: ENROLL_LOGIN, roles: [{ rolename: ENROLL_ROLE }] },
  ]);
  /** Logins issued by this process: a replayed enrollment changes nothing and costs no command. */
  const issued = new Set<string>();
  const issue = async (address: Address, password: string): Promise<void> => {
    const role = `picopay-${address}`;
    await commands.send([
      {
        command: 'createRole',
        rolename: role,
        acls: [
          { acltype: 'subscribePattern', topic: inboxFilter(address), allow: true },
          { acltype: 'subscribePattern', topic: `${TOPIC_ROOT}/presence/+`, allow: true },
          { acltype: 'publishClientSend', topic: `${TOPIC_ROOT}/inbox/+/${address}`, allow: true },
          { acltype: 'publishClientSend', topic: presenceTopic(address), allow: true },
        ],
      },
      { command: 'createClient', username: address, password, clientid: sessionIdOf(address), roles: [{ rolename: role }] },
      // Already there (a re-enrollment): the password it proves is the one to keep.
      { command: 'setClientPassword', username: address, password },
    ]);
    issued.add(`${address}/${password}`);
  };
  client.on('message', (topic, payload) => {
    const address = enrolledBy(topic);
    const password = payload.length <= MAX_ENROLLMENT_BYTES ? payload.toString('utf8') : '';
    if (address && issued.has(`${address}/${password}`)) return;
    if (!address || !verifyBrokerPassword(address, password, authorities)) {
      o.logger.debug({ topic }, 'enrollment refused: not a picopay key proving itself for this broker');
      return;
    }
    issue(address, password).then(
      () => o.logger.info({ device: address }, 'broker login issued'),
      (err) => o.logger.warn({ device: address, err: String(err) }, 'issuing a broker login failed'),
    );
  });
  await client.subscribeAsync(ENROLL_FILTER, { qos: 1 });
  o.logger.info({ url: o.url }, 'issuing broker logins to devices that enroll');
  return { issue, close: () => client.endAsync() };
}

/** Dynamic-security commands and their answers, one batch at a time. */
function controlChannel(client: MqttClient): { send(commands: object[]): Promise<void> } {
  let queue: Promise<unknown> = client.subscribeAsync(`${CONTROL}/response`);
  const waiting: ((payload: Buffer) => void)[] = [];
  client.on('message', (topic, payload) => {
    if (topic === `${CONTROL}/response`) waiting.shift()?.(payload);
  });
  return {
    send(commands) {
      const done = queue.then(
        () =>
          new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('the broker did not answer a dynamic-security command')), 10_000);
            waiting.push(() => {
              clearTimeout(timer);
              resolve();
            });
            client.publish(CONTROL, JSON.stringify({ commands }), { qos: 1 });
          }),
      );
      queue = done.catch(() => {});
      return done;
    },
  };
}
