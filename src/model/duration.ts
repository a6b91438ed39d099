import { InvalidTermsError } from '../errors.ts';

/**
 * The adjudicator's bounds on a challenge period (its MIN_ and MAX_CHALLENGE_DURATION):
 * one hour to four weeks. The contract clamps a channel's duration into them; every party
 * refuses, before it signs or deposits anything, terms whose duration lies outside, so that
 * what the params say is what the chain enforces.
 */
export const MIN_CHALLENGE_DURATION = 3600n;
export const MAX_CHALLENGE_DURATION = 28n * 24n * 3600n;

/**
 * What a device proposes unless told otherwise: a day, so that a device offline for a
 * night still answers a stale registration in time (tests pass less, and move the chain's clock).
 */
export const DEFAULT_CHALLENGE_DURATION = 24n * 3600n;

export function assertChallengeDuration(seconds: bigint): void {
  if (seconds < MIN_CHALLENGE_DURATION || seconds > MAX_CHALLENGE_DURATION) {
    throw new InvalidTermsError(`challenge duration ${seconds} s is outside ${MIN_CHALLENGE_DURATION}..${MAX_CHALLENGE_DURATION} s`);
  }
}
