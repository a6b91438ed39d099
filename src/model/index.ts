export * from './types.ts';
export * from './hash.ts';
export * from './channelId.ts';
export * from './allocation.ts';
export * from './locked.ts';
export * from './duration.ts';
