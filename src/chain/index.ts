// The on-chain side of picopay. Only this directory imports viem, so that a device that
// does not watch the chain never loads it.
export * from './abi.generated.ts';
export * from './anvil.ts';
export * from './client.ts';
export * from './conclude.ts';
export * from './concludeVirtual.ts';
export * from './cooperativeClose.ts';
export * from './deploy.ts';
export * from './deposit.ts';
export * from './devnet.ts';
export * from './encode.ts';
export * from './errors.ts';
export * from './lockedTree.ts';
export * from './read.ts';
export * from './register.ts';
export * from './registerVirtual.ts';
export * from './sender.ts';
export * from './watcher.ts';
export * from './watchtower.ts';
export * from './withdraw.ts';
export * from './settle.ts';
