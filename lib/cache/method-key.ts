import { isPrintableAscii, sha256Key } from './key-text.js';

/** Longest key memcached accepts, in bytes, `keyPrefix` included. */
export const MAX_KEY_BYTES = 250;

/** Shortest hash kept in a default key: 22 base64url characters, 132 bits. */
const MIN_HASH_CHARS = 22;

/**
 * JSON with object keys sorted at every depth, so equal arguments always give the same text.
 * `bigint`s, `Map`s and `Set`s are tagged; `undefined` in an array becomes `null` (as in JSON),
 * in an object it is left out. Throws a `TypeError` on functions, symbols and cycles (they have
 * no stable text).
 */
export function stableStringify(value: unknown): string {
  return stringifyValue(value, new Set(), 'arguments') ?? 'null';
}

function stringifyValue(value: unknown, seen: Set<object>, path: string): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value)
        ? JSON.stringify(value)
        : JSON.stringify({ $number: String(value) });
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify({ $bigint: value.toString() });
    case 'undefined':
      return undefined;
    case 'function':
    case 'symbol':
      throw new TypeError(`${path} is a ${typeof value}, which has no stable key`);
  }
  if (value === null) return 'null';
  const object = value as object;
  if (seen.has(object)) throw new TypeError(`${path} is cyclic, which has no stable key`);
  seen.add(object);
  try {
    const withJson = object as { toJSON?: unknown };
    if (typeof withJson.toJSON === 'function' && !Buffer.isBuffer(object)) {
      return stringifyValue((withJson.toJSON as () => unknown)(), seen, path);
    }
    if (Buffer.isBuffer(object) || object instanceof Uint8Array) {
      return JSON.stringify({ $bytes: Buffer.from(object).toString('base64') });
    }
    if (Array.isArray(object)) {
      return `[${object.map((item, i) => stringifyValue(item, seen, `${path}[${i}]`) ?? 'null').join(',')}]`;
    }
    if (object instanceof Map) {
      const entries = [...object].map(
        ([k, v], i) =>
          `[${stringifyValue(k, seen, `${path}.key${i}`) ?? 'null'},${stringifyValue(v, seen, `${path}.value${i}`) ?? 'null'}]`,
      );
      return `{"$map":[${entries.sort().join(',')}]}`;
    }
    if (object instanceof Set) {
      const items = [...object].map(
        (v, i) => stringifyValue(v, seen, `${path}.item${i}`) ?? 'null',
      );
      return `{"$set":[${items.sort().join(',')}]}`;
    }
    const parts: string[] = [];
    for (const key of Object.keys(object).sort()) {
      const text = stringifyValue((object as Record<string, unknown>)[key], seen, `${path}.${key}`);
      if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(object);
  }
}

/**
 * The scope part of a default key: `<host module>/<class>`, e.g. `ProductsModule/ProductsService`
 * for a provider or controller declared in `ProductsModule`. The module's name keeps two classes
 * of one name in two modules apart (a class provided in several modules gets one scope per
 * module; two same-named classes in two same-named modules of one application fail its boot).
 */
export function cacheScope(moduleName: string, className: string): string {
  return `${moduleName}/${className}`;
}

/**
 * The key `@Cacheable` uses when no `key` is given: `<scope>.method(<stable JSON of the
 * arguments>)` when that is printable ASCII without spaces and fits in 250 bytes together with
 * `keyPrefix`; otherwise `<scope>.method#<sha256 of that text, base64url>` (or the bare hash, cut
 * to what fits, when even that is too long). So the key is always a valid memcached key. The
 * scope is `<host module>/<class>` (see {@link cacheScope}).
 *
 * Use it to evict entries cached under default keys:
 * `@CacheEvict({ keys: (id: string) => [defaultCacheKey('ProductsModule/ProductsService', 'findOne', [id])] })`.
 *
 * @param scope - `<host module name>/<class name>`.
 * @param methodName - the method name.
 * @param args - the method's arguments.
 * @param keyPrefix - the client's `keyPrefix` (its bytes count toward the 250).
 * @throws TypeError when an argument has no stable text (a function, a symbol, a cycle).
 * @throws RangeError when `keyPrefix` leaves too little room for a hash.
 */
export function defaultCacheKey(
  scope: string,
  methodName: string,
  args: readonly unknown[],
  keyPrefix = '',
): string {
  const budget = MAX_KEY_BYTES - Buffer.byteLength(keyPrefix, 'utf8');
  const head = `${scope}.${methodName}`;
  const readable = `${head}(${stableStringify([...args]).slice(1, -1)})`;
  if (isPrintableAscii(readable) && readable.length <= budget) return readable;
  const hash = sha256Key(readable);
  const hashed = `${head}#${hash}`;
  if (isPrintableAscii(head) && hashed.length <= budget) return hashed;
  if (budget >= MIN_HASH_CHARS + 1) return `#${hash}`.slice(0, budget);
  throw new RangeError(
    `keyPrefix leaves ${budget} bytes for the key of ${head}: too few for a collision-free default key; give @Cacheable a key or shorten keyPrefix`,
  );
}
