import 'reflect-metadata';
import {
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsNotEmpty,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  ValidateBy,
  validateSync,
  type ValidationError,
  type ValidationOptions,
} from 'class-validator';
import { MemcachedOptionsError } from './errors.js';
import type { MemcachedOptions, RetryableCommand } from './options.js';

const RETRYABLE_COMMANDS: readonly RetryableCommand[] = [
  'get',
  'gets',
  'getMany',
  'getsMany',
  'getAndTouch',
  'touch',
  'set',
  'setMany',
  'delete',
  'deleteMany',
  'add',
  'replace',
  'append',
  'prepend',
  'cas',
  'incr',
  'decr',
  'version',
  'stats',
  'flushAll',
];

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isServerSpec(item: unknown): boolean {
  if (typeof item === 'string') return item.trim() !== '';
  if (!isPlainObject(item)) return false;
  const weightOk =
    item['weight'] === undefined ||
    (Number.isInteger(item['weight']) && Number(item['weight']) > 0);
  if ('path' in item) return typeof item['path'] === 'string' && item['path'] !== '' && weightOk;
  const port = item['port'];
  return (
    typeof item['host'] === 'string' &&
    item['host'] !== '' &&
    (port === undefined || (Number.isInteger(port) && Number(port) > 0 && Number(port) < 65536)) &&
    weightOk
  );
}

function IsServers(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isServers',
      validator: {
        validate: (value: unknown) =>
          (typeof value === 'string' && value.trim() !== '') ||
          (Array.isArray(value) && value.length > 0 && value.every(isServerSpec)),
        defaultMessage: () =>
          'servers must be a comma-separated string or a non-empty array of "host:port[:weight]" strings, { host, port?, weight? } or { path } objects',
      },
    },
    options,
  );
}

function IsFalseOrObject(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isFalseOrObject',
      validator: {
        validate: (value: unknown) => value === false || isPlainObject(value),
        defaultMessage: (args) => `${args?.property ?? 'value'} must be false or an object`,
      },
    },
    options,
  );
}

function IsBooleanOrObject(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isBooleanOrObject',
      validator: {
        validate: (value: unknown) => typeof value === 'boolean' || isPlainObject(value),
        defaultMessage: (args) =>
          `${args?.property ?? 'value'} must be true, false or an options object`,
      },
    },
    options,
  );
}

function IsSerde(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isSerde',
      validator: {
        validate: (value: unknown) =>
          typeof value === 'object' &&
          value !== null &&
          typeof (value as Record<string, unknown>)['serialize'] === 'function' &&
          typeof (value as Record<string, unknown>)['deserialize'] === 'function',
        defaultMessage: () =>
          'serde must have serialize(key, value) and deserialize(key, buffer, flags) methods',
      },
    },
    options,
  );
}

/** `retry` when it is an object. @internal */
class RetryOptionsSchema {
  @IsInt()
  @Min(1)
  @Max(100)
  attempts!: number;

  @IsOptional()
  @IsInt()
  @Min(0)
  @Max(600_000)
  delay?: number;

  @IsOptional()
  @IsArray()
  retryOn?: unknown[];

  @IsOptional()
  @IsArray()
  doNotRetryOn?: unknown[];

  @IsOptional()
  @IsArray()
  @IsIn(RETRYABLE_COMMANDS, { each: true })
  unsafeCommands?: string[];
}

/** `failover` when it is an object. @internal */
class FailoverOptionsSchema {
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1000)
  failureThreshold?: number;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(86_400_000)
  deadTimeout?: number;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(86_400_000)
  retryTimeout?: number;
}

/** `compression` when it is an object. @internal */
class CompressionOptionsSchema {
  @IsInt()
  @Min(0)
  threshold!: number;

  @IsOptional()
  @IsIn(['zlib'])
  algorithm?: string;

  @IsOptional()
  @IsInt()
  @Min(-1)
  @Max(9)
  level?: number;
}

/** `auth`. @internal */
class AuthOptionsSchema {
  @IsString()
  @IsNotEmpty()
  @Matches(/^\S+$/, { message: 'username must not contain whitespace' })
  username!: string;

  @IsString()
  @IsNotEmpty()
  password!: string;
}

/**
 * The shape of {@link MemcachedOptions} as class-validator rules, checked when a
 * `MemcachedModule` client is created (before the client's own `resolveOptions` checks, which
 * go deeper: server address syntax, key prefix bytes, ...).
 * @internal
 */
export class MemcachedOptionsSchema {
  @IsOptional()
  @IsServers()
  servers?: unknown;

  @IsOptional()
  @IsString()
  @Matches(/^[A-Za-z_][A-Za-z0-9_]*$/, {
    message: 'envPrefix must be a valid environment variable prefix (letters, digits, _)',
  })
  envPrefix?: string;

  @IsOptional()
  @IsString()
  // eslint-disable-next-line no-control-regex -- control characters are what it rejects
  @Matches(/^[^\s\x00-\x1f\x7f]*$/, {
    message: 'keyPrefix must not contain whitespace or control characters',
  })
  keyPrefix?: string;

  @IsOptional()
  @IsIn(['ketama', 'rendezvous', 'modula'])
  hashing?: string;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(64)
  poolSize?: number;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(600_000)
  connectTimeout?: number;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(600_000)
  timeout?: number;

  @IsOptional()
  @IsFalseOrObject()
  retry?: unknown;

  @IsOptional()
  @IsFalseOrObject()
  failover?: unknown;

  @IsOptional()
  @IsBoolean()
  ignoreErrors?: boolean;

  @IsOptional()
  @IsSerde()
  serde?: unknown;

  @IsOptional()
  @IsFalseOrObject()
  compression?: unknown;

  @IsOptional()
  @IsBooleanOrObject()
  tls?: unknown;

  @IsOptional()
  @IsFalseOrObject({ message: 'auth must be an object { username, password }' })
  auth?: unknown;

  @IsOptional()
  @IsIn(['text'])
  protocol?: string;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1024 * 1024 * 1024)
  maxValueSize?: number;

  @IsOptional()
  @IsInt()
  @Min(-(2 ** 31))
  @Max(2 ** 31 - 1)
  defaultTtl?: number;

  @IsOptional()
  @IsBoolean()
  keepAlive?: boolean;
}

const NESTED: ReadonlyArray<[keyof MemcachedOptions, new () => object]> = [
  ['retry', RetryOptionsSchema],
  ['failover', FailoverOptionsSchema],
  ['compression', CompressionOptionsSchema],
  ['auth', AuthOptionsSchema],
];

function check(schema: new () => object, input: Record<string, unknown>): ValidationError[] {
  const instance = Object.assign(new schema(), input);
  return validateSync(instance, {
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    validationError: { target: false, value: false },
  });
}

function firstProblem(errors: ValidationError[], prefix: string): [string, string] | undefined {
  const error = errors[0];
  if (error === undefined) return undefined;
  const constraints = Object.values(error.constraints ?? {});
  const path = `${prefix}${error.property}`;
  const message =
    error.constraints?.['whitelistValidation'] !== undefined
      ? 'unknown option (check the spelling)'
      : constraints.join('; ');
  return [path, message];
}

/**
 * Validates module options with class-validator rules mirroring {@link MemcachedOptions}.
 *
 * @throws {@link MemcachedOptionsError} naming the first option at fault (`poolSize`,
 *   `failover.deadTimeout`, ...).
 */
export function validateMemcachedOptions(options: unknown): void {
  if (!isPlainObject(options)) {
    throw new MemcachedOptionsError(
      'options',
      `expected an options object, got ${options === null ? 'null' : typeof options}`,
    );
  }
  const top = firstProblem(check(MemcachedOptionsSchema, options), '');
  if (top !== undefined) throw new MemcachedOptionsError(top[0], top[1]);
  for (const [name, schema] of NESTED) {
    const value = options[name];
    if (!isPlainObject(value)) continue;
    const nested = firstProblem(check(schema, value), `${name}.`);
    if (nested !== undefined) throw new MemcachedOptionsError(nested[0], nested[1]);
  }
}
