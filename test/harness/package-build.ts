/**
 * A build of the package for child processes: lib/ transpiled file by file to ES modules (no type
 * check, a second or two), so a test can run node scripts that import the real implementation
 * without `npm run build`.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Transpiles lib/ into `outDir`; resolves with the file URL of its index.js. */
export async function buildPackage(outDir: string): Promise<string> {
  const libDir = join(ROOT, 'lib');
  const entries = await readdir(libDir, { recursive: true });
  for (const entry of entries) {
    if (!entry.endsWith('.ts') || entry.endsWith('.d.ts')) continue;
    const source = await readFile(join(libDir, entry), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      fileName: entry,
      compilerOptions: {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ES2022,
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
        esModuleInterop: true,
      },
    });
    const target = join(outDir, entry.replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, outputText);
  }
  return pathToFileURL(join(outDir, 'index.js')).href;
}
