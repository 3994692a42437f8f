/**
 * The CLI never sends a token in clear over a network: `catty login --api http://…` to a host
 * that is not loopback is refused naming https://; `--insecure` allows it with a warning each
 * time (also for the commands after it, which use the stored server); loopback is allowed. The
 * "remote" server is a stand-in on loopback that the CLI reaches through HTTP_PROXY, so no
 * traffic leaves this machine.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isLoopbackHost } from "../../src/client/transport.ts";
import { tempDirs } from "../helpers/fs.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");
const tempDir = tempDirs("catty-transport-");

const seen: string[] = [];
const standIn = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req) {
    seen.push(req.url);
    const path = new URL(req.url).pathname;
    if (path === "/v1/whoami") return Response.json({ user: "owner" });
    if (path === "/v1/sessions") return Response.json({ sessions: [] });
    return Response.json({ type: "error", code: "not_found", message: "no" }, { status: 404 });
  },
});
afterAll(() => standIn.stop(true));

// Spawned, not spawnSync: the stand-in answers from this process.
const cli = async (home: string, args: string[]): Promise<{ err: string; code: number }> => {
  const p = Bun.spawn([process.execPath, CLI, ...args], {
    env: { ...process.env, CATTY_HOME: home, CATTY_NO_UPDATE_CHECK: "1", HTTP_PROXY: `http://127.0.0.1:${standIn.port}`, http_proxy: "", NO_PROXY: "", no_proxy: "" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  return { err: Bun.stripANSI(err), code };
};

test("loopback names are loopback, others are not", () => {
  for (const h of ["127.0.0.1", "127.3.4.5", "[::1]", "localhost", "catty.localhost"]) expect(isLoopbackHost(h)).toBe(true);
  for (const h of ["example.test", "10.0.0.1", "192.168.1.7", "128.0.0.1", "localhost.example.com"]) expect(isLoopbackHost(h)).toBe(false);
});

test("catty login --api http://example.test is refused naming https://, and nothing is sent", async () => {
  const home = tempDir();
  const r = await cli(home, ["login", "--api", "http://example.test", "--token", "cat_secret"]);
  expect(r.code).toBe(1);
  expect(r.err).toContain("https://example.test");
  expect(r.err).toContain("--insecure");
  expect(seen.filter((u) => u.includes("example.test"))).toEqual([]);
});

test("--insecure logs in with a warning, and every later command warns again", async () => {
  const home = tempDir();
  const r = await cli(home, ["login", "--api", "http://example.test", "--token", "cat_secret", "--insecure"]);
  expect(r.err).toContain("unencrypted");
  expect(r.code).toBe(0);
  expect(seen).toContain("http://example.test/v1/whoami");
  expect(JSON.parse(readFileSync(join(home, "credentials.json"), "utf8"))).toMatchObject({ api: "http://example.test", insecure: true });
  const before = seen.length;
  const list = await cli(home, ["list", "--json"]);
  expect(list.err).toContain("unencrypted");
  expect(seen.slice(before).some((u) => u.startsWith("http://example.test/v1/sessions"))).toBe(true);
});

test("a stored http:// server logged in to without --insecure is refused", async () => {
  const home = tempDir();
  await Bun.write(join(home, "credentials.json"), JSON.stringify({ api: "http://example.test", token: "cat_secret" }));
  const before = seen.length;
  const r = await cli(home, ["list", "--json"]);
  expect(r.code).toBe(1);
  expect(r.err).toContain("https://example.test");
  expect(seen.length).toBe(before);
});

test("http:// to loopback is allowed without a warning", async () => {
  const home = tempDir();
  const r = await cli(home, ["login", "--api", `http://127.0.0.1:${standIn.port}`, "--token", "cat_secret"]);
  expect(r.code).toBe(0);
  expect(r.err).not.toContain("unencrypted");
});
