// Loads one entry point of the installed nestjs-memcached and reports every module the process
// loaded meanwhile, to check which dependencies an entry point pulls in. Copied into a consumer
// app (so that the package resolves from the app's node_modules) and run there:
//
//   node load-probe.mjs import|require <specifier>
//
// prints `REPORT {json}`: `resolved` (the entry point's file), `exports` (its export names) and
// `loaded`, the union of three records, so that no way of loading a module goes unseen:
// - every URL the ES module loader resolves (a resolve hook: `module.registerHooks` where Node
//   has it, which also sees require(); else `module.register`, which writes to a log file);
// - every file require() resolves (`Module._resolveFilename`, through which every require() of
//   a CommonJS or ES module goes, including those made by CommonJS code that `import` loaded);
// - the keys of `require.cache` after loading.
import Module, { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [mode, specifier] = process.argv.slice(2);
if ((mode !== 'import' && mode !== 'require') || specifier === undefined) {
  console.error('usage: node load-probe.mjs import|require <specifier>');
  process.exit(2);
}

const require = createRequire(import.meta.url);
const seen = new Set();
const record = (url) => seen.add(url.startsWith('file:') ? fileURLToPath(url) : url);

let logDir;
if (typeof Module.registerHooks === 'function') {
  Module.registerHooks({
    resolve(spec, context, nextResolve) {
      const result = nextResolve(spec, context);
      record(result.url);
      return result;
    },
  });
} else {
  logDir = mkdtempSync(join(tmpdir(), 'load-probe-'));
  const log = join(logDir, 'resolved.log');
  writeFileSync(log, '');
  const hooks = `
    import { appendFileSync } from 'node:fs';
    let log;
    export function initialize(data) { log = data.log; }
    export async function resolve(specifier, context, nextResolve) {
      const result = await nextResolve(specifier, context);
      appendFileSync(log, result.url + '\\n');
      return result;
    }`;
  Module.register(`data:text/javascript,${encodeURIComponent(hooks)}`, { data: { log } });
}

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (...args) {
  const filename = resolveFilename.apply(this, args);
  record(filename);
  return filename;
};

const loaded = mode === 'import' ? await import(specifier) : require(specifier);
const resolved =
  mode === 'import' ? fileURLToPath(import.meta.resolve(specifier)) : require.resolve(specifier);

Module._resolveFilename = resolveFilename;
if (logDir !== undefined) {
  for (const url of readFileSync(join(logDir, 'resolved.log'), 'utf8').split('\n')) {
    if (url !== '') record(url);
  }
  rmSync(logDir, { recursive: true, force: true });
}
for (const key of Object.keys(require.cache)) record(key);

const report = {
  mode,
  specifier,
  resolved,
  exports: Object.keys(loaded).sort(),
  loaded: [...seen].sort(),
};
console.log(`REPORT ${JSON.stringify(report)}`);
