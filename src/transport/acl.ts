import { isAddress, TOPIC_ROOT } from './topics.ts';

// The access rules of docs/mqtt/acl, for the embedded broker. A device logs in with its
// address as username; it may read only its own inbox and write only as itself, so the
// sender level of an inbox topic can be trusted.

/** May `username` subscribe to `filter`? (`pattern read .../inbox/%u/#`, and `.../presence/+` or one address's) */
export function maySubscribe(username: string | undefined, filter: string): boolean {
  if (!isPlainLevel(username)) return false;
  // Its own inbox: all of it, or what one sender sent (nothing longer: the broker keeps filters).
  const ownInbox = `${TOPIC_ROOT}/inbox/${username}`;
  if (filter === ownInbox || filter === `${ownInbox}/+` || filter === `${ownInbox}/#`) return true;
  if (filter.startsWith(`${ownInbox}/`) && isAddress(filter.slice(ownInbox.length + 1))) return true;
  // Presence: everyone's, or one address's (a filter of junk would be kept by the broker for nothing).
  const levels = filter.split('/');
  return levels.length === 4 && filter.startsWith(`${TOPIC_ROOT}/presence/`) && (levels[3] === '+' || isAddress(levels[3]!));
}

/** May `username` publish to `topic`? (`pattern write .../inbox/+/%u` and `.../presence/%u`) */
export function mayPublish(username: string | undefined, topic: string): boolean {
  if (!isPlainLevel(username)) return false;
  if (topic === `${TOPIC_ROOT}/presence/${username}`) return true;
  const levels = topic.split('/');
  return (
    levels.length === 5 &&
    topic.startsWith(`${TOPIC_ROOT}/inbox/`) &&
    isPlainLevel(levels[3]) &&
    levels[4] === username
  );
}

/** A non-empty topic level without wildcards: usable as an identity. */
function isPlainLevel(level: string | undefined): level is string {
  return level !== undefined && level !== '' && !/[/+#]/.test(level);
}
