/**
 * The compiled binaries, built once per test run into a temp directory (so a test run never
 * races with a developer's own `dist/`).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { removeAfterRun } from "./fs.ts";

export const ROOT = resolve(import.meta.dir, "../..");

export interface Binaries {
  dir: string;
  catty: string;
  server: string;
  agent: string;
}

let built: Promise<Binaries> | null = null;

export function buildBinaries(): Promise<Binaries> {
  built ??= (async () => {
    // ~360 MB of binaries per test process: removed after its last test.
    const dir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-bin-")));
    const proc = Bun.spawn([process.execPath, join(ROOT, "build.ts"), "--quiet", "--outdir", dir], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    const code = await proc.exited;
    if (code !== 0) throw new Error(`build failed: ${await new Response(proc.stderr).text()}`);
    return { dir, catty: join(dir, "catty"), server: join(dir, "catty-server"), agent: join(dir, "catty-agent") };
  })();
  return built;
}
