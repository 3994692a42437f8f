/**
 * With no server configured, catty starts one in the background, logs in to it, and a second catty
 * reuses it; another program on that port never gets the token.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinaries } from "../helpers/binaries.ts";
import { freePort } from "../helpers/ports.ts";
import { removeAfterRun } from "../helpers/fs.ts";

const home = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-zero-")));
const env = { ...process.env, HOME: home, CATTY_HOME: join(home, ".catty"), CATTY_PORT: String(freePort()) };
const pidFile = join(home, ".catty", "server", "server.pid");

afterAll(() => {
  if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, "utf8")), "SIGTERM");
});

test("catty starts a local server on first use and reuses it", async () => {
  const bins = await buildBinaries();
  const version = Bun.spawnSync([bins.catty, "--version"], { env });
  // A development build (a release reports its version: test/e2e/release.test.ts).
  expect(version.stdout.toString().trim()).toBe("dev");

  const first = Bun.spawnSync([bins.catty, "list", "--json"], { env });
  expect(first.stderr.toString()).toBe("");
  expect(first.exitCode).toBe(0);
  expect(JSON.parse(first.stdout.toString())).toEqual([]);
  const pid = readFileSync(pidFile, "utf8").trim();

  const creds = join(home, ".catty", "credentials.json");
  expect(statSync(creds).mode & 0o777).toBe(0o600);
  expect(statSync(join(home, ".catty")).mode & 0o777).toBe(0o700);
  expect(JSON.parse(readFileSync(creds, "utf8"))).toMatchObject({ api: `http://127.0.0.1:${env.CATTY_PORT}`, local: true });

  const second = Bun.spawnSync([bins.catty, "list"], { env });
  expect(second.exitCode).toBe(0);
  expect(second.stderr.toString()).toContain("No sessions yet");
  expect(readFileSync(pidFile, "utf8").trim()).toBe(pid);

  const logout = Bun.spawnSync([bins.catty, "logout"], { env });
  expect(logout.exitCode).toBe(0);
  expect(existsSync(creds)).toBe(false);
}, 60_000);

test("catty never sends its token to another program answering on the local port", async () => {
  const bins = await buildBinaries();
  const seen: Array<string | null> = [];
  const impostor = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      seen.push(req.headers.get("authorization"));
      return Response.json({ ok: true, version: "0.1.0", proof: "0".repeat(64) });
    },
  });
  try {
    const home2 = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-zero-")));
    const env2 = { ...process.env, HOME: home2, CATTY_HOME: join(home2, ".catty"), CATTY_PORT: String(impostor.port) };
    // The token of this home's local server (not running now): what an impostor is after.
    mkdirSync(join(home2, ".catty", "server"), { recursive: true, mode: 0o700 });
    writeFileSync(join(home2, ".catty", "server", "owner-token"), "cat_secret\n", { mode: 0o600 });
    // Spawned asynchronously: the impostor answers from this process's event loop.
    const proc = Bun.spawn([bins.catty, "list", "--json"], { env: env2, stdout: "pipe", stderr: "pipe" });
    const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain("is not the local Catty server");
    expect(stderr).toContain("Your token was not sent");
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((h) => h === null)).toBe(true);
  } finally {
    impostor.stop(true);
  }
}, 60_000);
