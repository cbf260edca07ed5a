import fc from 'fast-check';
import {
  encodeArith,
  encodeAuth,
  encodeDelete,
  encodeFlushAll,
  encodeRetrieval,
  encodeStats,
  encodeStorage,
  encodeTouch,
  encodeVerbosity,
  encodeVersion,
  type StorageCommand,
} from '../../../lib/protocol/text/encoder.js';

/** Byte-exact comparison, rendered as latin1 text so that failures are readable. */
function expectBytes(actual: Buffer, expected: Buffer | string): void {
  const want = typeof expected === 'string' ? Buffer.from(expected, 'utf8') : expected;
  expect(Buffer.isBuffer(actual)).toBe(true);
  expect(actual.toString('latin1')).toBe(want.toString('latin1'));
  expect(actual.equals(want)).toBe(true);
}

const INLINE_MAX = 16 * 1024;

describe('encodeStorage', () => {
  test.each<[StorageCommand]>([['set'], ['add'], ['replace'], ['append'], ['prepend']])(
    '%s',
    (command) => {
      const out = encodeStorage(command, 'user:42', 5, 300, Buffer.from('hello'));
      expect(out).toHaveLength(1);
      expectBytes(out[0]!, `${command} user:42 5 300 5\r\nhello\r\n`);
    },
  );

  test('cas with a cas token', () => {
    const out = encodeStorage('cas', 'k', 0, 0, Buffer.from('v'), '18446744073709551615');
    expect(out).toHaveLength(1);
    expectBytes(out[0]!, 'cas k 0 0 1 18446744073709551615\r\nv\r\n');
  });

  test('noreply', () => {
    expectBytes(
      encodeStorage('set', 'k', 1, 2, Buffer.from('ab'), undefined, true)[0]!,
      'set k 1 2 2 noreply\r\nab\r\n',
    );
    expectBytes(
      encodeStorage('cas', 'k', 1, 2, Buffer.from('ab'), '77', true)[0]!,
      'cas k 1 2 2 77 noreply\r\nab\r\n',
    );
    expectBytes(
      encodeStorage('add', 'k', 0, 0, Buffer.from('ab'), undefined, false)[0]!,
      'add k 0 0 2\r\nab\r\n',
    );
  });

  test('maximal flags and a negative exptime', () => {
    expectBytes(
      encodeStorage('set', 'k', 4294967295, -1, Buffer.from('x'))[0]!,
      'set k 4294967295 -1 1\r\nx\r\n',
    );
  });

  test('UTF-8 key: the header is UTF-8, the length counts value bytes', () => {
    const value = Buffer.from('wörld', 'utf8'); // 6 bytes
    const out = encodeStorage('set', 'ключ:🙂', 0, 0, value);
    expect(out).toHaveLength(1);
    expectBytes(
      out[0]!,
      Buffer.concat([Buffer.from('set ключ:🙂 0 0 6\r\n', 'utf8'), value, Buffer.from('\r\n')]),
    );
  });

  test('empty value', () => {
    const out = encodeStorage('set', 'empty', 0, 0, Buffer.alloc(0));
    expect(out).toHaveLength(1);
    expectBytes(out[0]!, 'set empty 0 0 0\r\n\r\n');
  });

  test('binary value with CRLF inside is copied verbatim', () => {
    const value = Buffer.from([0x00, 0x0d, 0x0a, 0xff, 0x0d, 0x0a]);
    const out = encodeStorage('prepend', 'b', 0, 0, value);
    expectBytes(
      out[0]!,
      Buffer.concat([Buffer.from('prepend b 0 0 6\r\n'), value, Buffer.from('\r\n')]),
    );
  });

  test('a value above 16 KiB is returned as [header, value (same instance), CRLF]', () => {
    const value = Buffer.alloc(INLINE_MAX + 1, 0x61);
    const out = encodeStorage('set', 'big', 3, 60, value);
    expect(out).toHaveLength(3);
    expectBytes(out[0]!, `set big 3 60 ${INLINE_MAX + 1}\r\n`);
    expect(out[1]).toBe(value);
    expectBytes(out[2]!, '\r\n');
  });

  test('a large value with UTF-8 key, cas and noreply', () => {
    const value = Buffer.alloc(100_000, 0x7a);
    const out = encodeStorage('cas', 'grand:ü', 0, 0, value, '42', true);
    expect(out).toHaveLength(3);
    expectBytes(out[0]!, 'cas grand:ü 0 0 100000 42 noreply\r\n');
    expect(out[1]).toBe(value);
    expectBytes(out[2]!, '\r\n');
  });

  test('a value of exactly 16 KiB is one buffer holding a copy', () => {
    const value = Buffer.alloc(INLINE_MAX, 0x62);
    const out = encodeStorage('set', 'edge', 0, 0, value);
    expect(out).toHaveLength(1);
    const expected = Buffer.concat([
      Buffer.from(`set edge 0 0 ${INLINE_MAX}\r\n`),
      value,
      Buffer.from('\r\n'),
    ]);
    expectBytes(out[0]!, expected);
    expect(out[0]).not.toBe(value);
    value.fill(0x63); // the encoded bytes do not depend on the caller's buffer afterwards
    expectBytes(out[0]!, expected);
  });

  test('property: the concatenated chunks are header, value, CRLF for any size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: INLINE_MAX + 64 }),
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        (size, byte, noreply) => {
          const value = Buffer.alloc(size, byte);
          const out = encodeStorage('set', 'p', 9, 10, value, undefined, noreply);
          expect(out).toHaveLength(size > INLINE_MAX ? 3 : 1);
          const header = `set p 9 10 ${size}${noreply ? ' noreply' : ''}\r\n`;
          expect(
            Buffer.concat(out).equals(
              Buffer.concat([Buffer.from(header), value, Buffer.from('\r\n')]),
            ),
          ).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('encodeRetrieval', () => {
  test('get one key', () => {
    expectBytes(encodeRetrieval('get', ['user:42']), 'get user:42\r\n');
  });

  test('get and gets with several keys, UTF-8 included', () => {
    expectBytes(encodeRetrieval('get', ['a', 'b', 'c']), 'get a b c\r\n');
    expectBytes(encodeRetrieval('gets', ['a', 'ключ', '日本']), 'gets a ключ 日本\r\n');
  });

  test('gat and gats put the exptime first', () => {
    expectBytes(encodeRetrieval('gat', ['k'], 300), 'gat 300 k\r\n');
    expectBytes(encodeRetrieval('gats', ['k1', 'k2'], 0), 'gats 0 k1 k2\r\n');
    expectBytes(encodeRetrieval('gats', ['k'], -1), 'gats -1 k\r\n');
  });

  test('gat without an exptime sends 0; get ignores an exptime', () => {
    expectBytes(encodeRetrieval('gat', ['k']), 'gat 0 k\r\n');
    expectBytes(encodeRetrieval('get', ['k'], 300), 'get k\r\n');
    expectBytes(encodeRetrieval('gets', ['k'], 300), 'gets k\r\n');
  });
});

describe('encodeDelete / encodeTouch', () => {
  test('delete', () => {
    expectBytes(encodeDelete('user:42'), 'delete user:42\r\n');
    expectBytes(encodeDelete('user:42', false), 'delete user:42\r\n');
    expectBytes(encodeDelete('user:42', true), 'delete user:42 noreply\r\n');
    expectBytes(encodeDelete('ключ'), 'delete ключ\r\n');
  });

  test('touch', () => {
    expectBytes(encodeTouch('k', 60), 'touch k 60\r\n');
    expectBytes(encodeTouch('k', 0, true), 'touch k 0 noreply\r\n');
    expectBytes(encodeTouch('k', 2592001), 'touch k 2592001\r\n');
  });
});

describe('encodeArith', () => {
  test('number deltas', () => {
    expectBytes(encodeArith('incr', 'hits', 1), 'incr hits 1\r\n');
    expectBytes(encodeArith('decr', 'hits', 0), 'decr hits 0\r\n');
    expectBytes(
      encodeArith('incr', 'hits', Number.MAX_SAFE_INTEGER),
      'incr hits 9007199254740991\r\n',
    );
  });

  test('bigint deltas up to 2^64-1', () => {
    expectBytes(encodeArith('incr', 'c', 5n), 'incr c 5\r\n');
    expectBytes(encodeArith('incr', 'c', 2n ** 53n + 1n), 'incr c 9007199254740993\r\n');
    expectBytes(encodeArith('decr', 'c', 0xffffffffffffffffn), 'decr c 18446744073709551615\r\n');
  });

  test('noreply', () => {
    expectBytes(encodeArith('incr', 'c', 1, true), 'incr c 1 noreply\r\n');
    expectBytes(encodeArith('decr', 'c', 7n, true), 'decr c 7 noreply\r\n');
    expectBytes(encodeArith('decr', 'c', 7n, false), 'decr c 7\r\n');
  });

  test('UTF-8 key', () => {
    expectBytes(encodeArith('incr', 'zähler', 2), 'incr zähler 2\r\n');
  });
});

describe('other commands', () => {
  test('flush_all with and without delay', () => {
    expectBytes(encodeFlushAll(), 'flush_all\r\n');
    expectBytes(encodeFlushAll(0), 'flush_all\r\n');
    expectBytes(encodeFlushAll(30), 'flush_all 30\r\n');
  });

  test('version', () => {
    expectBytes(encodeVersion(), 'version\r\n');
  });

  test('stats with and without group', () => {
    expectBytes(encodeStats(), 'stats\r\n');
    expectBytes(encodeStats('items'), 'stats items\r\n');
    expectBytes(encodeStats('slabs'), 'stats slabs\r\n');
    expectBytes(encodeStats('settings'), 'stats settings\r\n');
  });

  test('verbosity', () => {
    expectBytes(encodeVerbosity(0), 'verbosity 0\r\n');
    expectBytes(encodeVerbosity(2), 'verbosity 2\r\n');
  });
});

describe('encodeAuth', () => {
  test('ASCII credentials', () => {
    expectBytes(encodeAuth('alice', 's3cret'), 'set _auth 0 -1 12\r\nalice s3cret\r\n');
  });

  test('UTF-8 credentials: the length is in bytes', () => {
    const user = 'jürgen';
    const pass = 'пароль🙂';
    const n = Buffer.byteLength(`${user} ${pass}`, 'utf8');
    expect(n).toBe(7 + 1 + 16);
    expectBytes(encodeAuth(user, pass), `set _auth 0 -1 ${n}\r\n${user} ${pass}\r\n`);
  });

  test('a password with spaces is sent as is', () => {
    expectBytes(encodeAuth('u', 'a b'), 'set _auth 0 -1 5\r\nu a b\r\n');
  });
});
