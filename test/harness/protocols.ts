import type { MemcachedOptions } from '../../lib/index.js';

/**
 * The wire protocols the command suites run on: each suite is written once and runs unchanged
 * on every protocol listed here.
 */
export const PROTOCOLS: ReadonlyArray<NonNullable<MemcachedOptions['protocol']>> = [
  'text',
  'meta',
  'binary',
];
