import type { Address } from '../model/types.ts';

// The MQTT topic layout. The sender is the last level of an inbox topic, so a broker ACL
// that lets a client publish only to `inbox/+/<its username>` authenticates the sender.

export const TOPIC_ROOT = 'picopay/v1';
const INBOX = `${TOPIC_ROOT}/inbox`;
const PRESENCE = `${TOPIC_ROOT}/presence`;

export const PRESENCE_ONLINE = 'online';
export const PRESENCE_OFFLINE = 'offline';

const ADDRESS = /^0x[0-9a-f]{40}$/;

export function isAddress(value: string): value is Address {
  return ADDRESS.test(value);
}

/** Where `from` publishes a message for `to`. */
export function inboxTopic(to: Address, from: Address): string {
  return `${INBOX}/${to}/${from}`;
}

/** What a device subscribes to in order to receive its messages. */
export function inboxFilter(self: Address): string {
  return `${INBOX}/${self}/+`;
}

export function presenceTopic(address: Address): string {
  return `${PRESENCE}/${address}`;
}

/** The sender of a message arriving on `topic` for `self`, or undefined when the topic is not a valid inbox topic of `self`. */
export function senderOf(topic: string, self: Address): Address | undefined {
  const prefix = `${INBOX}/${self}/`;
  if (!topic.startsWith(prefix)) return undefined;
  const sender = topic.slice(prefix.length);
  return isAddress(sender) ? sender : undefined;
}

/** The device whose presence `topic` carries, or undefined when it is not a presence topic. */
export function presenceOf(topic: string): Address | undefined {
  if (!topic.startsWith(`${PRESENCE}/`)) return undefined;
  const device = topic.slice(PRESENCE.length + 1);
  return isAddress(device) ? device : undefined;
}

/** Where a device publishes its fixed broker password for the gateway to create its login (Mosquitto). */
export function enrollTopic(address: Address): string {
  return `${TOPIC_ROOT}/enroll/${address}`;
}

export const ENROLL_FILTER = `${TOPIC_ROOT}/enroll/+`;

/**
 * The public login (username, password and its only client id) devices enroll with at a
 * Mosquitto whose logins the gateway issues: it may publish enrollments and nothing else.
 */
export const ENROLL_LOGIN = 'picopay-enroll';

/** The address an enrollment topic names, if it is one. */
export function enrolledBy(topic: string): Address | undefined {
  const prefix = `${TOPIC_ROOT}/enroll/`;
  const rest = topic.startsWith(prefix) ? topic.slice(prefix.length) : '';
  return isAddress(rest) ? rest : undefined;
}

/** The broker session id of `address`: the transport's default, and the only one the brokers let it use. */
export function sessionIdOf(address: string): string {
  return `picopay-${address.toLowerCase().replace(/^0x/, '')}`;
}
