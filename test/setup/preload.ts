/**
 * Test preload (bunfig.toml): every test process gets its own HOME and CATTY_HOME in a fresh
 * temporary directory, and no Catty setting (`CATTY_*`) or storage credential (`AWS_*`) from the developer's environment, so no
 * test reads or writes the developer's own files or talks to their server. After the last test,
 * the PostgreSQL cluster the tests started (if any) is stopped, and the temporary HOME and what
 * helpers asked to remove after the run (compiled binaries, test servers' data dirs) are removed:
 * `bun test` runs no exit handlers.
 */
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AFTER_RUN } from "../helpers/fs.ts";
import { stopPostgres } from "../helpers/postgres.ts";

// Every setting of every binary, and storage credentials: a test sets what it needs itself.
for (const name of Object.keys(process.env)) {
  if (name.startsWith("CATTY_") || name.startsWith("AWS_")) delete process.env[name];
}
const home = mkdtempSync(join(tmpdir(), "catty-test-home-"));
process.env.HOME = home;
process.env.CATTY_HOME = join(home, ".catty");

/** What outlives a test file (`removeAfterRun` in test/helpers/fs.ts), the temporary HOME first. */
const afterRun: string[] = [home];
(globalThis as Record<symbol, unknown>)[AFTER_RUN] = afterRun;

afterAll(async () => {
  await stopPostgres();
  for (const path of afterRun) rmSync(path, { recursive: true, force: true });
});
