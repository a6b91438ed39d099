import type { Agent } from '../client/agent.ts';
import { cores } from '../client/core.ts';
import type { Attachment } from '../channel/record.ts';
import type { Bytes32, SignedState, State } from '../model/types.ts';
import type { StateBody } from '../wire/messages.ts';

// What a misbehaving device does with its own agent that the public API refuses: it
// proposes lock changes with evidence of its own making (a funding or settlement request
// whose terms, balances or signatures it chose). The agent still stores, signs and sends
// them as it would its own; what the test checks is what the other side does with them.

/** Proposes on ledger channel `id` the state `build` makes, with `attachment` as its evidence. */
export function proposeWithEvidence(agent: Agent, id: Bytes32, build: (s: State) => Omit<StateBody, 'version'>, attachment: Attachment): Promise<SignedState> {
  return cores.get(agent)!.requests.enqueue(id, build, attachment);
}
