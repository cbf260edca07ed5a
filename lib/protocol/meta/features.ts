/**
 * What a memcached server's meta commands can do, read from its `version` reply when a
 * connection opens. Flags newer than the oldest supported server are used only where the server
 * has them (an older server ignores some unknown flags silently, e.g. `mg C` before 1.6.40 and
 * `ms s` before 1.6.20, so they must never be sent blindly).
 */
export interface MetaFeatures {
  /** The version the server reported, e.g. `1.6.18`; undefined before the handshake. */
  readonly version: string | undefined;
  /** `EN` echoes the `O` and `k` flags of the request (1.6.18). */
  readonly missEchoesFlags: boolean;
  /** `ms … s` returns the item size (1.6.20; ignored before). */
  readonly setReturnsSize: boolean;
  /** `E<cas>` sets the new cas of a write, and `md … x` drops a value but keeps the item (1.6.27). */
  readonly explicitCas: boolean;
  /** `mg … C<cas>` returns the value only when the cas differs (1.6.40; ignored before). */
  readonly conditionalGet: boolean;
}

/** The oldest memcached whose meta commands this client speaks (`ms <key> <datalen>`, `HD`, `b`). */
export const META_MIN_VERSION = '1.6.10';

/** Until the server said otherwise: only what every supported server has. */
export const BASE_FEATURES: MetaFeatures = {
  version: undefined,
  missEchoesFlags: false,
  setReturnsSize: false,
  explicitCas: false,
  conditionalGet: false,
};

/** `[major, minor, patch]` of a version string (`1.6.18`, `1.6.21-beta`), or undefined. */
export function parseVersion(version: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (m === null) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function atLeast(v: readonly [number, number, number], min: string): boolean {
  const m = parseVersion(min)!;
  for (let i = 0; i < 3; i++) {
    if (v[i]! !== m[i]!) return v[i]! > m[i]!;
  }
  return true;
}

/**
 * The features of a server from its version, or a string saying why the meta protocol cannot
 * be used with it. A version that is not `x.y.z` (a proxy may report its own) is accepted with
 * the base features.
 */
export function metaFeatures(version: string): MetaFeatures | string {
  const v = parseVersion(version);
  if (v === undefined) return { ...BASE_FEATURES, version };
  if (!atLeast(v, META_MIN_VERSION)) {
    return `memcached ${version} does not speak the meta protocol this client uses: protocol 'meta' needs memcached ${META_MIN_VERSION} or newer (upgrade the server, or use protocol: 'text')`;
  }
  return {
    version,
    missEchoesFlags: atLeast(v, '1.6.18'),
    setReturnsSize: atLeast(v, '1.6.20'),
    explicitCas: atLeast(v, '1.6.27'),
    conditionalGet: atLeast(v, '1.6.40'),
  };
}
