/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`) by self time: the top functions overall,
 * and the top functions of this package's own code (paths containing `/lib/`), so profiles of
 * `npm run bench` can be compared between changes.
 *
 *   BENCH_CLIENTS=ours BENCH_WORKLOADS=get-100B-c64 BENCH_HEAP_OPS=0 \
 *     node --cpu-prof --cpu-prof-dir=/tmp/prof bench/.out/bench/run.js
 *   node bench/.out/bench/cpuprofile-summary.js /tmp/prof/CPU.*.cpuprofile [top=25]
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
  /** Samples per (1-based) line of the function's script. */
  positionTicks?: Array<{ line: number; ticks: number }>;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  location: string;
  selfMs: number;
  percent: number;
}

/** Self time per function (ms), heaviest first; `filter` keeps only matching script URLs. */
export function selfTimes(profile: CpuProfile, filter?: (url: string) => boolean): SelfTime[] {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  let total = 0;
  for (const us of selfUs.values()) total += us;
  const byFunction = new Map<string, SelfTime>();
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (filter !== undefined && !filter(url)) continue;
    const file = url.replace(/^file:\/\//, '').replace(/^.*\/(lib|node_modules|bench)\//, '$1/');
    const location = url === '' ? '(native)' : `${file}:${lineNumber + 1}`;
    const name = functionName || '(anonymous)';
    const key = `${name} ${location}`;
    const entry = byFunction.get(key) ?? { name, location, selfMs: 0, percent: 0 };
    entry.selfMs += us / 1000;
    byFunction.set(key, entry);
  }
  const out = [...byFunction.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const e of out) e.percent = total > 0 ? (100 * e.selfMs * 1000) / total : 0;
  return out;
}

function isLib(url: string): boolean {
  return /\/lib\/[^/]+/.test(url) && !url.includes('node_modules');
}

function table(rows: readonly SelfTime[], top: number): string {
  return rows
    .slice(0, top)
    .map(
      (r) =>
        `${r.selfMs.toFixed(1).padStart(9)} ms ${r.percent.toFixed(1).padStart(5)}%  ${r.name}  ${r.location}`,
    )
    .join('\n');
}

export interface HotLine {
  /** `lib/...ts:line` (through the source map) or `file.js:line`. */
  location: string;
  /** The source line's text. */
  code: string;
  selfMs: number;
  percent: number;
}

/**
 * Self time per source line of the scripts `filter` keeps (V8's positionTicks), mapped back to
 * the TypeScript sources through the `.js.map` files next to the compiled scripts.
 */
export function hotLines(profile: CpuProfile, filter: (url: string) => boolean): HotLine[] {
  const msPerTick = new Map<number, number>();
  const counts = new Map<number, number>();
  const us = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    counts.set(id, (counts.get(id) ?? 0) + 1);
    us.set(id, (us.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  let total = 0;
  for (const v of us.values()) total += v;
  for (const [id, n] of counts) msPerTick.set(id, (us.get(id) ?? 0) / 1000 / n);
  const byLine = new Map<string, HotLine>();
  const maps = new Map<string, SourceLineMap | undefined>();
  for (const node of profile.nodes) {
    const url = node.callFrame.url;
    if (!filter(url) || node.positionTicks === undefined) continue;
    const ms = msPerTick.get(node.id) ?? 0;
    if (!maps.has(url)) maps.set(url, SourceLineMap.load(url));
    const map = maps.get(url);
    for (const { line, ticks } of node.positionTicks) {
      const where = map?.original(line) ?? { location: `${url}:${line}`, code: '' };
      const entry = byLine.get(where.location) ?? { ...where, selfMs: 0, percent: 0 };
      entry.selfMs += ticks * ms;
      byLine.set(where.location, entry);
    }
  }
  const out = [...byLine.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const e of out) e.percent = total > 0 ? (100 * e.selfMs * 1000) / total : 0;
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Generated line → original file:line, from a compiled script's source map (first segment). */
class SourceLineMap {
  private constructor(
    private readonly lines: Array<{ source: number; line: number } | undefined>,
    private readonly sources: string[],
    private readonly texts: string[][],
  ) {}

  static load(url: string): SourceLineMap | undefined {
    if (!url.startsWith('file://')) return undefined;
    const file = fileURLToPath(url);
    if (!existsSync(`${file}.map`)) return undefined;
    const raw = JSON.parse(readFileSync(`${file}.map`, 'utf8')) as {
      sources: string[];
      mappings: string;
    };
    const sources = raw.sources.map((s) => resolve(dirname(file), s));
    const texts = sources.map((s) => (existsSync(s) ? readFileSync(s, 'utf8').split('\n') : []));
    const lines: Array<{ source: number; line: number } | undefined> = [];
    let source = 0;
    let line = 0;
    for (const group of raw.mappings.split(';')) {
      let first: { source: number; line: number } | undefined;
      for (const segment of group.split(',')) {
        if (segment === '') continue;
        const v = decodeVlq(segment);
        if (v.length >= 4) {
          source += v[1]!;
          line += v[2]!;
          first ??= { source, line };
        }
      }
      lines.push(first);
    }
    return new SourceLineMap(lines, sources, texts);
  }

  /** `line` is 1-based in the generated script. */
  original(line: number): { location: string; code: string } | undefined {
    const m = this.lines[line - 1];
    if (m === undefined) return undefined;
    const path = relative(process.cwd(), this.sources[m.source]!);
    return {
      location: `${path}:${m.line + 1}`,
      code: (this.texts[m.source]![m.line] ?? '').trim().slice(0, 100),
    };
  }
}

function decodeVlq(segment: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = B64.indexOf(ch);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: cpuprofile-summary <file.cpuprofile> [top]\n');
    process.exitCode = 2;
    return;
  }
  const top = Number(topArg ?? 25);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const all = selfTimes(profile);
  const ours = selfTimes(
    profile,
    (url) => /\/lib\/[^/]+/.test(url) && !url.includes('node_modules'),
  );
  const totalMs = all.reduce((s, r) => s + r.selfMs, 0);
  const oursMs = ours.reduce((s, r) => s + r.selfMs, 0);
  process.stdout.write(
    `profile: ${totalMs.toFixed(0)} ms sampled; lib/ self time ${oursMs.toFixed(0)} ms (${((100 * oursMs) / totalMs).toFixed(1)}%)\n\n` +
      `top ${top} by self time (all):\n${table(all, top)}\n\ntop ${top} by self time (lib/):\n${table(ours, top)}\n`,
  );
  const lines = hotLines(profile, isLib);
  process.stdout.write(
    `\ntop ${top} lines of lib/ by self time:\n` +
      lines
        .slice(0, top)
        .map(
          (l) =>
            `${l.selfMs.toFixed(1).padStart(9)} ms ${l.percent.toFixed(1).padStart(5)}%  ${l.location.padEnd(42)} ${l.code}`,
        )
        .join('\n') +
      '\n',
  );
}

if (process.argv[1]?.endsWith('cpuprofile-summary.js')) main();
