/** Temporary directories and small file trees for tests. */
import { afterAll } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** Where the test preload (test/setup/preload.ts) keeps the paths to remove after the last test. */
export const AFTER_RUN = Symbol.for("catty.test.removeAfterRun");

/**
 * Removes `path` after the last test of this process: for what outlives a test file (the compiled
 * binaries, a server's data dir that a restarted server reuses). `bun test` runs no exit handlers;
 * the preload's last hook does this.
 */
export function removeAfterRun(path: string): string {
  const paths = (globalThis as Record<symbol, unknown>)[AFTER_RUN] as string[] | undefined;
  if (paths) paths.push(path);
  else process.on("exit", () => rmSync(path, { recursive: true, force: true }));
  return path;
}

/**
 * Returns a maker of fresh temp directories named `<prefix>…`, all removed after the file's
 * tests (also those whose modes a test restricted). Call it at the top level of a test file.
 */
export function tempDirs(prefix: string): () => string {
  const made: string[] = [];
  afterAll(() => {
    for (const dir of made) {
      if (existsSync(dir)) openDirs(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    made.push(dir);
    return dir;
  };
}

/**
 * Makes every directory under `dir` removable (0755). By hand, not `readdirSync(…, { recursive })`:
 * Bun's follows symlinks to directories, and tests leave links to `..` and `/` behind.
 */
function openDirs(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    chmodSync(join(dir, e.name), 0o755);
    openDirs(join(dir, e.name));
  }
}

/** Every path under `root`, relative and sorted; symlinks listed, never followed. */
export function listPaths(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const path = rel === "" ? e.name : `${rel}/${e.name}`;
    out.push(path);
    if (e.isDirectory()) out.push(...listPaths(root, path));
  }
  return out.sort();
}

/** Writes files (string or byte contents); keys ending in `/` are empty directories. */
export function writeTree(root: string, files: Record<string, string | Uint8Array>): string {
  for (const [rel, content] of Object.entries(files)) {
    const abs = join(root, rel);
    if (rel.endsWith("/")) {
      mkdirSync(abs, { recursive: true });
      continue;
    }
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, content);
  }
  return root;
}

/** `n` bytes of deterministic noise (incompressible, so sizes are predictable). */
export function noise(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Every file under `dir` whose bytes contain `needle` (to show a secret was written nowhere). */
export function filesContaining(dir: string, needle: string): string[] {
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && readFileSync(p).includes(needle)) found.push(p);
    }
  };
  walk(dir);
  return found;
}
