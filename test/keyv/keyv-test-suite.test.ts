/**
 * The official Keyv store compliance suite (@keyv/test-suite 2.x) run against KeyvMemcached on
 * two memcached servers started by the harness.
 *
 * The suite is written for Vitest: it calls `test.it(name, (t) => …)` and `test.beforeEach` /
 * `test.afterEach`, and asserts with the context's `t.expect`. Jest passes a `done` callback to a
 * test function that declares a parameter, so the suite gets a small shim that runs each of its
 * functions without arguments and hands it `{ expect }` (Jest's expect has every matcher the
 * suite uses). Its iterator tests are not run: memcached cannot list keys, so the store has no
 * `iterator` (and Keyv then gives `keyv.iterator` no value).
 */
import keyvTestSuite from '@keyv/test-suite';
import Keyv from 'keyv';
import { MemcachedClient } from '../../lib/client/index.js';
import { KeyvMemcached } from '../../lib/keyv/index.js';
import { startMemcacheds, stopAllMemcached } from '../harness/memcached.js';

type SuiteApi = Parameters<typeof keyvTestSuite>[0];
type SuiteTest = (context: { expect: typeof expect }) => unknown;

/** The subset of Vitest's API the suite calls, on Jest. */
const vitestShim = {
  it: (name: string, fn: SuiteTest) => test(name, async () => void (await fn({ expect }))),
  beforeEach: (fn: () => unknown) => beforeEach(async () => void (await fn())),
  afterEach: (fn: () => unknown) => afterEach(async () => void (await fn())),
} as unknown as SuiteApi;

let client: MemcachedClient;

beforeAll(async () => {
  const servers = await startMemcacheds(2);
  client = new MemcachedClient({ servers: servers.map((s) => s.address) });
});

afterAll(async () => {
  await client.close();
  await stopAllMemcached();
});

describe('@keyv/test-suite (api, values, namespace)', () => {
  keyvTestSuite(vitestShim, Keyv, () => new KeyvMemcached(client));
});

test('the store offers no iterator, so Keyv does not either', () => {
  const keyv = new Keyv({ store: new KeyvMemcached(client) });
  expect('iterator' in keyv.store).toBe(false);
  expect(keyv.iterator).toBeUndefined();
});
