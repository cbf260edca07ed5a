import { isAscii } from 'node:buffer';
import { isAnyArrayBuffer, isDate, isMap, isSet, isUint8Array } from 'node:util/types';
import { MemcachedSerdeError, MemcachedValueError } from '../errors.js';
import {
  FLAG_BYTES,
  FLAG_COMPRESSED,
  FLAG_INTEGER,
  FLAG_JSON,
  FLAG_LONG,
  FLAG_TEXT,
  type Serde,
  type SerializedValue,
} from './serde.js';

/** `'0'` .. `'9'` and `'-'` as bytes. */
const CHAR_0 = 0x30;
const CHAR_9 = 0x39;
const CHAR_MINUS = 0x2d;
const CHAR_SPACE = 0x20;

/**
 * The longest run of decimal digits that always fits a safe integer: 15 digits are at most
 * 999,999,999,999,999 < 2^53 - 1 (9,007,199,254,740,991), so they can be accumulated in a double
 * exactly. Longer texts go through `BigInt`.
 */
const MAX_FAST_DIGITS = 15;

const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE_BIGINT = BigInt(Number.MIN_SAFE_INTEGER);

/**
 * The default serde: compatible with pymemcache and python-memcached for bytes, text and integers,
 * JSON for everything else.
 *
 * | value                                   | flags | stored bytes                        |
 * | --------------------------------------- | ----- | ----------------------------------- |
 * | `Buffer` / `Uint8Array`                 | 0     | the bytes themselves                |
 * | `string`                                | 16    | UTF-8                               |
 * | safe-integer `number`                   | 2     | decimal text, e.g. `-42`            |
 * | `bigint`                                | 4     | decimal text                        |
 * | other finite number, boolean, `null`,   | 32    | `JSON.stringify(value)`             |
 * | object, array                           |       |                                     |
 *
 * Reading:
 *
 * - flags 0 → `Buffer` (the buffer handed to `deserialize`, not a copy);
 * - flags 16 → `string` (invalid UTF-8 sequences become U+FFFD);
 * - flags 2 → `number` when the decimal text is a safe integer, otherwise `bigint`, so an
 *   integer written by Python above 2^53 - 1 comes back as a `bigint` and no precision is lost;
 * - flags 4 → always `bigint`, so a `bigint` round-trips as a `bigint` whatever its size;
 * - flags 32 → `JSON.parse` (plain data only: no reviver, nothing is executed, and a `"__proto__"`
 *   key becomes an own property, it does not change any prototype);
 * - anything else (pickle's 1, a compression bit 8 that was not removed, unknown bits) →
 *   {@link MemcachedSerdeError}; pass a custom `serde` to read such values.
 *
 * Decisions worth knowing:
 *
 * - `-0` is an integer and is stored as `0` with flags 2; it reads back as `0`.
 * - Integers outside the safe range given as `number` (e.g. `1e21`) are stored as JSON, so they
 *   read back as the same `number` (a `bigint` is the way to store exact large integers).
 * - A `Uint8Array` that is not a `Buffer` is stored without copying (a `Buffer` view over the same
 *   memory) and reads back as a `Buffer`. Other typed arrays, `DataView`, `ArrayBuffer`, `Map`
 *   and `Set` are rejected, because JSON would store them as `{}` or an index-keyed object.
 * - Objects are stored as `JSON.stringify` makes them: `toJSON` is honoured (a `Date` reads back
 *   as its ISO string), class instances read back as plain objects, object properties whose
 *   value is `undefined`, a function or a symbol are left out.
 * - Values JSON would silently turn into `null` are rejected instead, at any depth: `NaN`,
 *   `±Infinity`, an invalid `Date`, and `undefined`/functions/symbols inside arrays. So are
 *   values `JSON.stringify` throws on (cycles, a `bigint` inside an object, a throwing `toJSON`).
 *   The depth check costs a second, checking `JSON.stringify` pass, and only runs when the JSON
 *   text contains `null` at all.
 * - Bytes are never copied: the stored `value` of a `Buffer`/`Uint8Array` shares its memory, so
 *   do not modify it until the write completes; and flags 0 reads return the `Buffer` given to
 *   `deserialize` itself.
 */
export class DefaultSerde implements Serde {
  /**
   * Encodes `value` for `key`.
   *
   * @throws {@link MemcachedValueError} when the value cannot be stored faithfully; the message
   *   names the key and what is wrong.
   */
  serialize(key: string, value: unknown): SerializedValue {
    switch (typeof value) {
      case 'string':
        return { value: Buffer.from(value, 'utf8'), flags: FLAG_TEXT };
      case 'number':
        if (Number.isSafeInteger(value)) {
          // String(-0) is '0'.
          return { value: Buffer.from(String(value), 'latin1'), flags: FLAG_INTEGER };
        }
        if (!Number.isFinite(value)) {
          throw valueError(key, `${String(value)} cannot be stored (JSON would turn it into null)`);
        }
        return { value: Buffer.from(JSON.stringify(value), 'latin1'), flags: FLAG_JSON };
      case 'bigint':
        return { value: Buffer.from(value.toString(), 'latin1'), flags: FLAG_LONG };
      case 'boolean':
        return { value: Buffer.from(value ? 'true' : 'false', 'latin1'), flags: FLAG_JSON };
      case 'object':
        if (value === null) {
          return { value: Buffer.from('null', 'latin1'), flags: FLAG_JSON };
        }
        if (Buffer.isBuffer(value)) {
          return { value, flags: FLAG_BYTES };
        }
        if (isUint8Array(value)) {
          return {
            value: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
            flags: FLAG_BYTES,
          };
        }
        return { value: Buffer.from(toJson(key, value), 'utf8'), flags: FLAG_JSON };
      case 'undefined':
        throw valueError(key, 'undefined cannot be stored (use delete to remove a key)');
      default:
        // function, symbol
        throw valueError(key, `a ${typeof value} cannot be stored`);
    }
  }

  /**
   * Decodes the bytes stored under `key` with `flags` (compression bit already removed).
   *
   * @throws {@link MemcachedSerdeError} for unknown flags, malformed integer text or invalid JSON;
   *   the message names the key and the flags.
   */
  deserialize(key: string, value: Buffer, flags: number): unknown {
    switch (flags) {
      case FLAG_TEXT:
        return decodeText(value);
      case FLAG_JSON:
        return parseJson(key, value, flags);
      case FLAG_BYTES:
        return value;
      case FLAG_INTEGER:
        return parseInteger(key, value, flags);
      case FLAG_LONG:
        return parseLong(key, value, flags);
      default:
        throw new MemcachedSerdeError(
          `Cannot deserialize the value of key ${JSON.stringify(key)}: unknown flags ${String(flags)}` +
            ((flags & FLAG_COMPRESSED) !== 0
              ? ' (the compression bit 8 is set: enable the compression option to read it)'
              : '') +
            ' (the default serde reads 0 bytes, 2/4 integer, 16 text, 32 JSON;' +
            ' pass a custom `serde` option to read values written with other flags, e.g. pickle)',
        );
    }
  }
}

/** The shared {@link DefaultSerde} instance (it is stateless). */
export const defaultSerde = new DefaultSerde();

function valueError(key: string, problem: string, cause?: unknown): MemcachedValueError {
  return new MemcachedValueError(
    `Cannot serialize the value of key ${JSON.stringify(key)}: ${problem}`,
    cause === undefined ? {} : { cause },
  );
}

/** JSON text of a non-null, non-byte object, or throws {@link MemcachedValueError}. */
function toJson(key: string, value: object): string {
  // (`node:util/types` checks work across realms, unlike instanceof.)
  if (ArrayBuffer.isView(value) || isAnyArrayBuffer(value) || isMap(value) || isSet(value)) {
    throw valueError(
      key,
      `a ${describe(value)} cannot be stored (JSON would lose its contents;` +
        ' store bytes as a Buffer, convert a Map or Set to an object or array)',
    );
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw valueError(key, `JSON.stringify failed: ${errorMessage(error)}`, error);
  }
  if (json === undefined) {
    throw valueError(key, `JSON.stringify returned undefined for a ${describe(value)}`);
  }
  // Fast path: values JSON silently turns into null always produce the token `null`, so text
  // without it needs no further checking. Otherwise find out whether every null is a real null.
  if (json.includes('null')) {
    checkNoSilentNull(key, value);
  }
  return json;
}

/**
 * Walks `value` the way `JSON.stringify` does and throws for anything it would turn into `null`
 * instead of a real `null`: non-finite numbers, invalid dates, and `undefined`, functions or
 * symbols as array elements.
 */
function checkNoSilentNull(key: string, value: object): void {
  let problem: string | undefined;
  const replacer = function (this: unknown, name: string, v: unknown): unknown {
    if (problem !== undefined) {
      return undefined;
    }
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) {
        problem = `${String(v)} at ${path(name)} cannot be stored (JSON would turn it into null)`;
      }
    } else if (v === null) {
      const original = (this as Record<string, unknown>)[name];
      if (isDate(original)) {
        problem = `an invalid Date at ${path(name)} cannot be stored (JSON would turn it into null)`;
      }
    } else if (
      Array.isArray(this) &&
      (v === undefined || typeof v === 'function' || typeof v === 'symbol')
    ) {
      problem = `${v === undefined ? 'undefined' : `a ${typeof v}`} at array index ${name} cannot be stored (JSON would turn it into null)`;
    }
    return problem === undefined ? v : undefined;
  };
  try {
    JSON.stringify(value, replacer);
  } catch (error) {
    // Only a toJSON that behaves differently the second time can get here.
    throw valueError(key, `JSON.stringify failed: ${errorMessage(error)}`, error);
  }
  if (problem !== undefined) {
    throw valueError(key, problem);
  }
}

function path(name: string): string {
  return name === '' ? 'the top level' : `property ${JSON.stringify(name)}`;
}

function describe(value: object): string {
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? name : 'object';
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function parseJson(key: string, value: Buffer, flags: number): unknown {
  try {
    return JSON.parse(decodeText(value));
  } catch (error) {
    throw new MemcachedSerdeError(
      `Cannot deserialize the value of key ${JSON.stringify(key)} (flags ${String(flags)}): ` +
        `invalid JSON: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/** Decimal integer text (`-?[0-9]+`, trailing spaces ignored) → `number` when safe, else `bigint`. */
function parseInteger(key: string, value: Buffer, flags: number): number | bigint {
  // memcached's decr rewrites a shorter number in place, padded with trailing spaces.
  let length = value.length;
  while (length > 0 && value[length - 1] === CHAR_SPACE) length--;
  const start = length > 0 && value[0] === CHAR_MINUS ? 1 : 0;
  const digits = length - start;
  if (digits === 0) {
    throw malformedInteger(key, value, flags);
  }
  if (digits <= MAX_FAST_DIGITS) {
    let n = 0;
    for (let i = start; i < length; i++) {
      const c = value[i]!;
      if (c < CHAR_0 || c > CHAR_9) {
        throw malformedInteger(key, value, flags);
      }
      n = n * 10 + (c - CHAR_0);
    }
    // `0 - 0` is 0, not -0.
    return start === 1 ? 0 - n : n;
  }
  for (let i = start; i < length; i++) {
    const c = value[i]!;
    if (c < CHAR_0 || c > CHAR_9) {
      throw malformedInteger(key, value, flags);
    }
  }
  const big = BigInt(value.toString('latin1', 0, length));
  return big <= MAX_SAFE_BIGINT && big >= MIN_SAFE_BIGINT ? Number(big) : big;
}

/** Decimal integer text (`-?[0-9]+`, trailing spaces ignored) → `bigint`, whatever its size. */
function parseLong(key: string, value: Buffer, flags: number): bigint {
  let length = value.length;
  while (length > 0 && value[length - 1] === CHAR_SPACE) length--;
  const start = length > 0 && value[0] === CHAR_MINUS ? 1 : 0;
  if (length - start === 0) {
    throw malformedInteger(key, value, flags);
  }
  for (let i = start; i < length; i++) {
    const c = value[i]!;
    if (c < CHAR_0 || c > CHAR_9) {
      throw malformedInteger(key, value, flags);
    }
  }
  // (BigInt('-0') is 0n: there is no negative zero.)
  return BigInt(value.toString('latin1', 0, length));
}

function malformedInteger(key: string, value: Buffer, flags: number): MemcachedSerdeError {
  const shown =
    value.length > 64 ? `${value.toString('latin1', 0, 64)}...` : value.toString('latin1');
  return new MemcachedSerdeError(
    `Cannot deserialize the value of key ${JSON.stringify(key)} (flags ${String(flags)}): ` +
      `not a decimal integer: ${JSON.stringify(shown)}`,
  );
}

/** Longer ASCII-only texts decode faster as latin1 (identical result for ASCII). */
const ASCII_CHECK_MIN = 1024;

function decodeText(value: Buffer): string {
  return value.length >= ASCII_CHECK_MIN && isAscii(value)
    ? value.toString('latin1')
    : value.toString('utf8');
}
