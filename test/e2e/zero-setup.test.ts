/** With no server configured, catty starts one in the background, logs in to it, and a second catty reuses it. */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinaries } from "../helpers/binaries.ts";
import { freePort } from "../helpers/ports.ts";

const home = mkdtempSync(join(tmpdir(), "catty-zero-"));
const env = { ...process.env, HOME: home, CATTY_HOME: join(home, ".catty"), CATTY_PORT: String(freePort()) };
const pidFile = join(home, ".catty", "server", "server.pid");

afterAll(() => {
  if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, "utf8")), "SIGTERM");
});

test("catty starts a local server on first use and reuses it", async () => {
  const bins = await buildBinaries();
  const version = Bun.spawnSync([bins.catty, "--version"], { env });
  expect(version.stdout.toString().trim()).toMatch(/^\d+\.\d+\.\d+$/);

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
