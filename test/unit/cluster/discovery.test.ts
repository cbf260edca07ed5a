import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { MemcachedProtocolError } from '../../../lib/errors.js';
import {
  clusterReplyLength,
  nodeAddress,
  parseClusterConfig,
} from '../../../lib/cluster/discovery.js';

/** A configuration reply with a correct byte count. */
function reply(payload: string, header = 'CONFIG cluster 0'): Buffer {
  return Buffer.from(`${header} ${Buffer.byteLength(payload)}\r\n${payload}\r\nEND\r\n`);
}

const AWS =
  '12\nmycluster.0001.cache.amazonaws.com|10.82.235.120|11211 ' +
  'mycluster.0002.cache.amazonaws.com|10.80.249.27|11211\n';

function protocolError(data: Buffer): string {
  try {
    parseClusterConfig(data);
  } catch (error) {
    expect(error).toBeInstanceOf(MemcachedProtocolError);
    return (error as Error).message;
  }
  throw new Error('parsed');
}

describe('parseClusterConfig', () => {
  it('reads the version and the nodes of a config get cluster reply', () => {
    expect(parseClusterConfig(reply(AWS))).toEqual({
      version: 12,
      nodes: [
        { host: 'mycluster.0001.cache.amazonaws.com', ip: '10.82.235.120', port: 11211 },
        { host: 'mycluster.0002.cache.amazonaws.com', ip: '10.80.249.27', port: 11211 },
      ],
    });
  });

  it('reads the same payload as the value of get AmazonElastiCache:cluster', () => {
    expect(parseClusterConfig(reply(AWS, 'VALUE AmazonElastiCache:cluster 0')).version).toBe(12);
  });

  it('uses the IP when given, else the host; brackets IPv6', () => {
    expect(nodeAddress({ host: 'a.example', ip: '10.0.0.1', port: 11211 })).toBe('10.0.0.1:11211');
    expect(nodeAddress({ host: 'a.example', ip: '', port: 11212 })).toBe('a.example:11212');
    expect(nodeAddress({ host: 'a.example', ip: '::1', port: 11213 })).toBe('[::1]:11213');
    expect(parseClusterConfig(reply('1\nhost-only||11300\n')).nodes).toEqual([
      { host: 'host-only', ip: '', port: 11300 },
    ]);
  });

  it.each<[string, Buffer, string]>([
    ['an ERROR reply', Buffer.from('ERROR\r\n'), 'ERROR'],
    ['END alone', Buffer.from('END\r\n'), 'END'],
    ['a wrong byte count', Buffer.from(`CONFIG cluster 0 5\r\n${AWS}\r\nEND\r\n`), 'END'],
    ['no END', Buffer.from(`CONFIG cluster 0 ${AWS.length}\r\n${AWS}\r\nEMD\r\n`), 'END'],
    ['bytes after END', Buffer.concat([reply(AWS), Buffer.from('x')]), 'after'],
    ['a version that is not a number', reply('v1\na|1.2.3.4|11211\n'), 'version'],
    ['no node', reply('3\n\n'), 'no node'],
    ['a node with two fields', reply('3\na|11211\n'), '<host>|<ip>|<port>'],
    ['a bad port', reply('3\na|1.2.3.4|0\n'), 'port'],
    ['a port out of range', reply('3\na|1.2.3.4|65536\n'), 'port'],
    ['a bad ip', reply('3\na|1.2.3|11211\n'), 'ip'],
    ['an empty host', reply('3\n|1.2.3.4|11211\n'), 'host'],
    ['a node listed twice', reply('3\na|1.2.3.4|1 b|1.2.3.4|1\n'), 'twice'],
    ['two spaces between nodes', reply('3\na|1.2.3.4|1  b|1.2.3.5|1\n'), '<host>|<ip>|<port>'],
    ['a missing final newline', reply('3\na|1.2.3.4|11211'), 'version line'],
    ['an extra line', reply('3\na|1.2.3.4|11211\nx\n'), 'version line'],
  ])('rejects %s', (_name, data, message) => {
    expect(protocolError(data)).toContain(message);
  });

  it('needs the whole reply: every proper prefix is incomplete, never misparsed', () => {
    const whole = reply(AWS);
    expect(clusterReplyLength(whole)).toBe(whole.length);
    for (let i = 0; i < whole.length; i++) {
      expect(clusterReplyLength(whole.subarray(0, i))).toBeUndefined();
    }
  });

  it('round-trips any valid node list (property)', () => {
    const node = fc.record({
      host: fc.stringMatching(/^[a-z][a-z0-9.-]{0,20}$/),
      ip: fc.oneof(fc.constant(''), fc.ipV4()),
      port: fc.integer({ min: 1, max: 65535 }),
    });
    fc.assert(
      fc.property(
        fc.nat({ max: 1e9 }),
        fc.uniqueArray(node, { minLength: 1, maxLength: 20, selector: nodeAddress }),
        (version, nodes) => {
          const payload = `${version}\n${nodes.map((n) => `${n.host}|${n.ip}|${n.port}`).join(' ')}\n`;
          expect(parseClusterConfig(reply(payload))).toEqual({ version, nodes });
        },
      ),
    );
  });
});
