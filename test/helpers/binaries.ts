/**
 * The compiled binaries, built once per test run into a temp directory (so a test run never
 * races with a developer's own `dist/`).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

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
    const dir = mkdtempSync(join(tmpdir(), "catty-bin-"));
    // ~330 MB of binaries per test process: gone when the process ends.
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
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
