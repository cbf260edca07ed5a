/** Console tables and the hand-written SVG chart of a run's results. */
import type { BenchResults, ClientResult, WorkloadResult } from './bench.js';
import { CLIENT_NAMES, type ClientName } from './clients.js';
import { sizeLabel } from './workloads.js';

const MB = 2 ** 20;

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function ms(n: number): string {
  return n >= 100 ? n.toFixed(1) : n >= 10 ? n.toFixed(2) : n.toFixed(3);
}

function ratio(n: number | undefined): string {
  return n === undefined ? '—' : `${n.toFixed(2)}×`;
}

/** workload × client: ops/s, p50, p99, memory after; then ours vs best peer and vs raw. */
export function formatTable(results: BenchResults): string {
  const lines: string[] = [];
  const m = results.meta;
  lines.push(
    `nestjs-memcached bench — ${m.date} — node ${m.node}, memcached ${m.memcached.version} (${m.memcached.args.filter((a) => a !== '-u' && a !== 'memcache' && a !== 'nobody').join(' ')}), ${m.cpus.count} × ${m.cpus.model}`,
  );
  lines.push(
    `load average ${m.loadavgStart.map((l) => l.toFixed(2)).join(' ')} → ${m.loadavgEnd.map((l) => l.toFixed(2)).join(' ')}; ` +
      (m.config.opsPerRound !== undefined
        ? `${m.config.opsPerRound} ops per round`
        : `${m.config.seconds} s per (workload, client)`) +
      ` in ${m.config.rounds} interleaved rounds, median round reported`,
  );
  lines.push('');
  const header = `${pad('workload', 44)}${pad('client', 17)}${pad('ops/s', 11, true)}${pad('p50 ms', 10, true)}${pad('p99 ms', 10, true)}${pad('heap MB', 9, true)}`;
  lines.push(header);
  lines.push('-'.repeat(header.length));
  for (const w of results.workloads) {
    w.results.forEach((r, i) => {
      const first = i === 0 ? pad(w.title, 44) : pad('', 44);
      const who = r.variant === undefined ? r.client : `${r.client} ${r.variant}`;
      if (r.error !== undefined) {
        lines.push(`${first}${pad(who, 17)}  failed: ${r.error.slice(0, 90)}`);
        return;
      }
      lines.push(
        `${first}${pad(who, 17)}${pad(int(r.opsPerSec), 11, true)}${pad(ms(r.p50Ms), 10, true)}${pad(ms(r.p99Ms), 10, true)}${pad((r.memoryAfter.heapUsed / MB).toFixed(1), 9, true)}`,
      );
    });
  }
  lines.push('');
  const h2 = `${pad('workload', 44)}${pad('ours ops/s', 12, true)}  ${pad('best peer', 28)}${pad('ours/best', 10, true)}${pad('raw ops/s', 12, true)}${pad('ours/raw', 10, true)}${pad('binary/memjs', 14, true)}`;
  lines.push(h2);
  lines.push('-'.repeat(h2.length));
  for (const w of results.workloads) {
    const s = w.summary;
    const best =
      s.bestPeer === undefined ? '—' : `${s.bestPeer.client} ${int(s.bestPeer.opsPerSec)}`;
    lines.push(
      `${pad(w.title, 44)}${pad(s.ours === undefined ? '—' : int(s.ours), 12, true)}  ${pad(best, 28)}${pad(ratio(s.oursOverBestPeer), 10, true)}${pad(s.raw === undefined ? '—' : int(s.raw), 12, true)}${pad(ratio(s.oursOverRaw), 10, true)}${pad(ratio(s.oursBinaryOverMemjs), 14, true)}`,
    );
  }
  const variantWorkloads = results.workloads.filter((w) => w.variants !== undefined);
  for (const w of variantWorkloads) {
    lines.push('');
    const hv = `${pad(w.title, 44)}${pad('none ops/s', 12, true)}${pad('lz4 ops/s', 12, true)}${pad('lz4/none', 10, true)}${pad('zlib ops/s', 12, true)}${pad('zlib/none', 11, true)}${pad('cpu µs none/lz4/zlib', 24, true)}`;
    lines.push(hv);
    lines.push('-'.repeat(hv.length));
    for (const v of w.variants ?? []) {
      const ops = (n: number | undefined): string => (n === undefined ? '—' : int(n));
      const cpu = (c: Partial<Record<'none' | 'lz4' | 'zlib', number>>): string =>
        (['none', 'lz4', 'zlib'] as const)
          .map((k) => (c[k] === undefined ? '—' : c[k].toFixed(1)))
          .join(' / ');
      lines.push(
        `${pad(`  ${v.client}`, 44)}${pad(ops(v.opsPerSec.none), 12, true)}${pad(ops(v.opsPerSec.lz4), 12, true)}${pad(ratio(v.overNone.lz4), 10, true)}${pad(ops(v.opsPerSec.zlib), 12, true)}${pad(ratio(v.overNone.zlib), 11, true)}${pad(cpu(v.cpuUsPerOp), 24, true)}`,
      );
    }
    lines.push(
      '  (ratios: median over the rounds of variant ÷ uncompressed in the same round; ops/s: median rounds; cpu µs: CPU time of the bench process per call, median round)',
    );
  }
  const meta = results.workloads.filter((w) => w.summary.metaOverTextPaired !== undefined);
  if (meta.length > 0) {
    lines.push('');
    const hm = `${pad("protocol: 'meta' against 'text'", 44)}${pad('text ops/s', 12, true)}${pad('meta ops/s', 12, true)}${pad('meta/text', 11, true)}${pad('round range', 14, true)}${pad('cpu µs text/meta', 19, true)}`;
    lines.push(hm);
    lines.push('-'.repeat(hm.length));
    const us = (n: number | undefined): string => (n === undefined ? '—' : n.toFixed(2));
    for (const w of meta) {
      const s = w.summary;
      const range = s.metaOverTextRange;
      lines.push(
        `${pad(w.title, 44)}${pad(s.ours === undefined ? '—' : int(s.ours), 12, true)}${pad(s.oursMeta === undefined ? '—' : int(s.oursMeta), 12, true)}${pad(`${s.metaOverTextPaired!.toFixed(2)}×`, 11, true)}${pad(range === undefined ? '—' : `${range[0].toFixed(2)}–${range[1].toFixed(2)}`, 14, true)}${pad(`${us(s.textCpuUsPerCall)} / ${us(s.metaCpuUsPerCall)}`, 19, true)}`,
      );
    }
    lines.push(
      '  (meta/text: median over the rounds of meta ÷ text in the same round; ops/s: median rounds; cpu µs: CPU time of the bench process per call, median round)',
    );
  }
  const tracing = results.workloads.filter(
    (w) => w.summary.oursTraced !== undefined || w.summary.oursOtel !== undefined,
  );
  if (tracing.length > 0) {
    lines.push('');
    const h3 = `${pad('observability cost', 44)}${pad('ours ops/s', 12, true)}${pad('cpu µs', 9, true)}${pad('traced', 12, true)}${pad('+µs', 8, true)}${pad('otel', 12, true)}${pad('+µs', 8, true)}`;
    lines.push(h3);
    lines.push('-'.repeat(h3.length));
    const us = (n: number | undefined): string => (n === undefined ? '—' : n.toFixed(2));
    for (const w of tracing) {
      const s = w.summary;
      lines.push(
        `${pad(w.title, 44)}${pad(s.ours === undefined ? '—' : int(s.ours), 12, true)}${pad(us(s.oursCpuUsPerCall), 9, true)}${pad(s.oursTraced === undefined ? '—' : int(s.oursTraced), 12, true)}${pad(us(s.tracedCostUsPerCall), 8, true)}${pad(s.oursOtel === undefined ? '—' : int(s.oursOtel), 12, true)}${pad(us(s.otelCostUsPerCall), 8, true)}`,
      );
    }
    lines.push(
      '  (cpu µs: CPU time of the bench process per call with nobody listening; +µs: what the subscriber adds to it, median rounds)',
    );
  }
  for (const lin of results.linearity) {
    lines.push('');
    lines.push(
      `linearity (${lin.client}, get c1): ` +
        lin.points
          .map((p) => `${sizeLabel(p.size)} ${ms(p.msPerOp)} ms (${p.usPerKB.toFixed(2)} µs/KB)`)
          .join(', '),
    );
    lines.push(
      `  fit: ms/op = ${lin.fit.interceptMs.toFixed(3)} + ${lin.fit.slopeUsPerKB.toFixed(2)} µs × KB, R² = ${lin.fit.r2.toFixed(4)}`,
    );
  }
  const h = results.heapFlat;
  if (h !== undefined) {
    lines.push('');
    lines.push(
      `heap flat (${h.client}, ${h.ops} gets of 512 KB, c4, ${int(h.opsPerSec)} ops/s): heapUsed ${(h.start.heapUsed / MB).toFixed(1)} → ${(h.end.heapUsed / MB).toFixed(1)} MB after GC, max sampled ${(h.maxHeapUsed / MB).toFixed(1)} MB; growth ${(h.growthBytes / MB).toFixed(2)} MB → ${h.flat ? 'FLAT' : 'GROWING'}`,
    );
  }
  const notes = new Map<string, Set<string>>();
  for (const w of results.workloads) {
    for (const r of w.results) {
      const set = notes.get(r.client) ?? new Set<string>();
      for (const n of r.notes) set.add(n);
      notes.set(r.client, set);
    }
  }
  lines.push('');
  lines.push('notes:');
  for (const [client, set] of notes) for (const n of set) lines.push(`  ${client}: ${n}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// SVG

export const CLIENT_COLORS: Record<ClientName, string> = {
  ours: '#e4572e',
  'ours-binary': '#f28e2b',
  'ours-baseline': '#8c2d04',
  'ours-nobatch': '#f4a582',
  'ours-traced': '#fdae61',
  'ours-otel': '#d73027',
  'ours-meta': '#c51b7d',
  memjs: '#4c78a8',
  memcached: '#54a24b',
  'memcache-client': '#b279a2',
  raw: '#9d9d9d',
};

const CLIENT_LABELS: Record<ClientName, string> = {
  ours: 'nestjs-memcached (ours)',
  'ours-binary': "ours, protocol: 'binary'",
  'ours-baseline': 'ours, baseline build (BENCH_BASELINE)',
  'ours-nobatch': 'ours, autoBatch off',
  'ours-traced': 'ours, TracingChannel subscriber',
  'ours-otel': 'ours, OpenTelemetry bridge on',
  'ours-meta': "ours, protocol: 'meta'",
  memjs: 'memjs',
  memcached: 'memcached (3rd-Eden)',
  'memcache-client': 'memcache-client',
  raw: 'raw socket ceiling',
};

function esc(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** 12345 → "12.3k", 1234567 → "1.23M". */
export function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 1 : 2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)}k`;
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

/** Gridlines above the baseline (fifths of a 1/2/2.5/5 × 10^k maximum are round numbers). */
const TICKS = 5;

/** A round axis maximum ≥ v: 1, 2, 2.5 or 5 × 10^k. */
function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function text(
  x: number,
  y: number,
  s: string,
  opts: { size?: number; anchor?: 'start' | 'middle' | 'end'; weight?: string; fill?: string } = {},
): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${opts.size ?? 11}" text-anchor="${opts.anchor ?? 'start'}"${opts.weight ? ` font-weight="${opts.weight}"` : ''} fill="${opts.fill ?? '#222'}">${esc(s)}</text>`;
}

/**
 * Grouped bars of ops/s: one panel per workload (each with its own scale, bars labelled with
 * their ops/s), plus a panel of ms/op over value size for the linearity workloads.
 */
export function renderSvg(results: BenchResults): string {
  const main = results.workloads.filter((w) => w.group === 'main');
  const clients = CLIENT_NAMES.filter((c) =>
    main.some((w) => w.results.some((r) => r.client === c)),
  );
  const cols = 3;
  const pw = 300;
  const ph = 230;
  const gap = 16;
  const top = 92;
  const panels = main.length + (results.linearity.length > 0 ? 1 : 0);
  const rows = Math.ceil(panels / cols);
  const width = cols * pw + (cols + 1) * gap;
  const height = top + rows * (ph + gap) + 40;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  const m = results.meta;
  out.push(
    text(gap, 26, 'nestjs-memcached vs peers — operations per second (higher is better)', {
      size: 17,
      weight: 'bold',
    }),
  );
  out.push(
    text(
      gap,
      45,
      `${m.date.slice(0, 10)} · node ${m.node} · memcached ${m.memcached.version} · ${m.cpus.count} × ${m.cpus.model.trim()} (shared machine) · median of ${m.config.rounds} interleaved rounds`,
      { size: 11, fill: '#555' },
    ),
  );
  // Legend.
  let lx = gap;
  for (const c of clients) {
    out.push(`<rect x="${lx}" y="60" width="12" height="12" fill="${CLIENT_COLORS[c]}"/>`);
    out.push(text(lx + 17, 70.5, CLIENT_LABELS[c], { size: 12 }));
    lx += 30 + CLIENT_LABELS[c].length * 6.6;
  }
  main.forEach((w, i) => {
    const px = gap + (i % cols) * (pw + gap);
    const py = top + Math.floor(i / cols) * (ph + gap);
    out.push(barPanel(w, clients, px, py, pw, ph));
  });
  if (results.linearity.length > 0) {
    const i = main.length;
    const px = gap + (i % cols) * (pw + gap);
    const py = top + Math.floor(i / cols) * (ph + gap);
    out.push(linearityPanel(results, px, py, pw, ph));
  }
  out.push(
    text(
      gap,
      height - 14,
      'Each client reads values it stored itself (ASCII strings, returned as strings). raw = pre-encoded pipelined requests on one socket, replies counted only. Full data: bench/results.json',
      { size: 10, fill: '#666' },
    ),
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function panelFrame(title: string, px: number, py: number, pw: number, ph: number): string[] {
  return [
    `<rect x="${px}" y="${py}" width="${pw}" height="${ph}" fill="#fafafa" stroke="#ddd"/>`,
    text(px + 10, py + 18, title, { size: 12, weight: 'bold' }),
  ];
}

function barPanel(
  w: WorkloadResult,
  clients: readonly ClientName[],
  px: number,
  py: number,
  pw: number,
  ph: number,
): string {
  const out = panelFrame(w.title, px, py, pw, ph);
  const x0 = px + 44;
  const x1 = px + pw - 10;
  const y0 = py + ph - 34; // baseline
  const y1 = py + 40; // top of the scale
  // One bar per result (a client of a variant workload has one per variant), in legend order.
  const shown = clients.flatMap((c) => w.results.filter((r) => r.client === c));
  const max = niceMax(Math.max(1, ...w.results.map((r) => r.opsPerSec)));
  for (let k = 0; k <= TICKS; k++) {
    const v = (max * k) / TICKS;
    const y = y0 - ((y0 - y1) * k) / TICKS;
    out.push(
      `<line x1="${x0}" y1="${y.toFixed(1)}" x2="${x1}" y2="${y.toFixed(1)}" stroke="${k === 0 ? '#999' : '#e6e6e6'}"/>`,
    );
    out.push(text(x0 - 4, y + 3.5, compact(v), { size: 9, anchor: 'end', fill: '#666' }));
  }
  const slot = (x1 - x0) / Math.max(1, shown.length);
  const bw = Math.min(38, slot * 0.7);
  shown.forEach((r: ClientResult, k) => {
    const c = r.client;
    const cx = x0 + slot * (k + 0.5);
    if (r.error !== undefined || r.opsPerSec <= 0) {
      out.push(text(cx, y0 - 6, 'failed', { size: 9, anchor: 'middle', fill: '#b00' }));
      return;
    }
    const h = ((y0 - y1) * r.opsPerSec) / max;
    if (r.variant !== undefined) {
      out.push(text(cx, y0 + 11, r.variant, { size: 9, anchor: 'middle', fill: '#333' }));
    }
    out.push(
      `<rect x="${(cx - bw / 2).toFixed(1)}" y="${(y0 - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${CLIENT_COLORS[c]}"><title>${esc(`${c}${r.variant === undefined ? '' : ` ${r.variant}`}: ${int(r.opsPerSec)} ops/s, p50 ${ms(r.p50Ms)} ms, p99 ${ms(r.p99Ms)} ms`)}</title></rect>`,
    );
    out.push(
      text(cx, y0 - h - 4, compact(r.opsPerSec), {
        size: 10,
        anchor: 'middle',
        weight: c === 'ours' ? 'bold' : 'normal',
      }),
    );
  });
  const s = w.summary;
  const parts: string[] = [];
  if (s.oursOverBestPeer !== undefined)
    parts.push(`ours = ${s.oursOverBestPeer.toFixed(2)}× best peer`);
  if (s.oursOverRaw !== undefined) parts.push(`${Math.round(s.oursOverRaw * 100)}% of raw`);
  if (s.oursBinaryOverMemjs !== undefined)
    parts.push(`binary = ${s.oursBinaryOverMemjs.toFixed(2)}× memjs`);
  out.push(text(px + 10, py + ph - 12, parts.join(' · '), { size: 11, fill: '#333' }));
  return out.join('\n');
}

function linearityPanel(
  results: BenchResults,
  px: number,
  py: number,
  pw: number,
  ph: number,
): string {
  const out = panelFrame('get c1: ms per op vs value size', px, py, pw, ph);
  const x0 = px + 44;
  const x1 = px + pw - 26;
  const y0 = py + ph - 34;
  const y1 = py + 40;
  const sizes = [...new Set(results.linearity.flatMap((l) => l.points.map((p) => p.size)))].sort(
    (a, b) => a - b,
  );
  const maxX = Math.max(...sizes);
  const maxY = niceMax(
    Math.max(...results.linearity.flatMap((l) => l.points.map((p) => p.msPerOp))),
  );
  const X = (size: number): number => x0 + ((x1 - x0) * size) / maxX;
  const Y = (v: number): number => y0 - ((y0 - y1) * v) / maxY;
  for (let k = 0; k <= TICKS; k++) {
    const v = (maxY * k) / TICKS;
    out.push(
      `<line x1="${x0}" y1="${Y(v).toFixed(1)}" x2="${x1}" y2="${Y(v).toFixed(1)}" stroke="${k === 0 ? '#999' : '#e6e6e6'}"/>`,
    );
    out.push(
      text(x0 - 4, Y(v) + 3.5, v.toFixed(maxY < 5 ? 1 : 0), {
        size: 9,
        anchor: 'end',
        fill: '#666',
      }),
    );
  }
  out.push(`<line x1="${x0}" y1="${y1}" x2="${x0}" y2="${y0}" stroke="#999"/>`);
  for (let k = 0; k <= 4; k++) {
    const size = (maxX * k) / 4;
    const label = k === 0 ? '0' : sizeLabel(size);
    out.push(text(X(size), y0 + 13, label, { size: 9, anchor: 'middle', fill: '#666' }));
  }
  const legend: string[] = [];
  for (const lin of results.linearity) {
    const color = CLIENT_COLORS[lin.client];
    const pts = lin.points
      .map((p) => `${X(p.size).toFixed(1)},${Y(p.msPerOp).toFixed(1)}`)
      .join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of lin.points) {
      out.push(
        `<circle cx="${X(p.size).toFixed(1)}" cy="${Y(p.msPerOp).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${lin.client} ${sizeLabel(p.size)}: ${ms(p.msPerOp)} ms/op`)}</title></circle>`,
      );
    }
    legend.push(
      `${lin.client}: ${lin.fit.slopeUsPerKB.toFixed(1)} µs/KB, R² ${lin.fit.r2.toFixed(3)}`,
    );
  }
  out.push(text(px + 10, py + ph - 12, legend.join(' · '), { size: 10, fill: '#333' }));
  return out.join('\n');
}
