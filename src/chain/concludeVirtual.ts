import { channelId } from '../model/channelId.ts';
import { ChannelKind, type Allocation, type Params } from '../model/types.ts';
import { writeAdjudicator, type ChainClient, type TxResult } from './client.ts';
import { toContractOutcome, toContractParams, toContractSubAlloc } from './encode.ts';
import { NotRegisteredError, WrongChannelKindError } from './errors.ts';
import { currentLockedProof, currentLockedRoot } from './lockedTree.ts';
import { readReleased, readSettled, type LogRange, type Settled } from './read.ts';

export interface ConcludeVirtualArgs extends LogRange {
  /** A concluded ledger channel that locks the virtual channel. */
  parent: Params;
  /** The parent's concluded outcome: its assets and full locked list. */
  parentOutcome: Allocation;
  virtual: Params;
  /** For a bidirectional virtual channel: the registered state's outcome. */
  virtualOutcome?: Allocation;
  /** The parent's current settled values and released ids; read from events when omitted. */
  settled?: Settled;
  released?: ReadonlySet<string>;
}

const EMPTY_OUTCOME: Allocation = { assets: [], balances: [], locked: [] };

/**
 * Releases a resolved virtual channel's funds from one concluded parent to the parent's
 * participants, proving its sub-allocation with a Merkle proof (siblings stay off-chain).
 * Call once per parent.
 */
export async function concludeVirtual(client: ChainClient, args: ConcludeVirtualArgs): Promise<TxResult> {
  if (args.virtual.kind === ChannelKind.Ledger) throw new WrongChannelKindError('a ledger channel is not locked in a parent');
  const vcId = channelId(args.virtual);
  const parentId = channelId(args.parent);
  const locked = args.parentOutcome.locked;
  const index = locked.findIndex((s) => s.id.toLowerCase() === vcId);
  if (index < 0) throw new RangeError(`parent ${parentId} does not lock ${vcId}`);
  const settled = args.settled ?? (await readSettled(client, parentId, args));
  if (!settled) throw new NotRegisteredError(`parent ${parentId} has not concluded`);
  const released = args.released ?? (await readReleased(client, parentId, args));
  return writeAdjudicator(client, 'release', [
    toContractParams(args.parent, client),
    { assets: args.parentOutcome.assets, lockedRoot: currentLockedRoot(locked, released), held: settled.held },
    toContractSubAlloc(locked[index]!),
    currentLockedProof(locked, index, released),
    toContractParams(args.virtual, client),
    toContractOutcome(args.virtualOutcome ?? EMPTY_OUTCOME),
  ]);
}
