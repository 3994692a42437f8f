/**
 * API tokens that end, against a real server: `catty-server token create --expires`, `token list`
 * (ids, never tokens) and `token revoke` (the token stops at once, and so do the browser sessions
 * it signed in); `catty logout` revokes its token on the server; bad ids are clear errors that
 * change nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tokenId } from "../../src/lib/token-id.ts";
import { removeAfterRun } from "../helpers/fs.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server.stop();
});

const serverMain = join(import.meta.dir, "../../server/main.ts");
const cliMain = join(import.meta.dir, "../../src/cli.ts");

/** `catty-server token …` on the test server's data dir. */
function tokenCommand(...args: string[]): { out: string; err: string; code: number } {
  const r = Bun.spawnSync([process.execPath, serverMain, "token", ...args, "--data-dir", server.dataDir]);
  return { out: r.stdout.toString(), err: r.stderr.toString(), code: r.exitCode };
}

const whoami = (token: string): Promise<Response> => fetch(`${server.url}/v1/whoami`, { headers: { Authorization: `Bearer ${token}` } });

/** Signs a browser in with `token`; resolves to its cookie. */
async function signIn(token: string): Promise<string> {
  const res = await fetch(`${server.url}/v1/web/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) });
  expect(res.status).toBe(200);
  return (res.headers.get("set-cookie") ?? "").split(";")[0] as string;
}
const me = (cookie: string): Promise<Response> => fetch(`${server.url}/v1/web/me`, { headers: { cookie } });

/** `catty …` in a process of its own (not spawnSync: the server it talks to runs in this one). */
async function runCli(env: Record<string, string | undefined>, args: string[]): Promise<{ exitCode: number; text: string }> {
  const p = Bun.spawn([process.execPath, cliMain, ...args], { env, stdout: "pipe", stderr: "pipe" });
  const [out, err, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { exitCode, text: out + err };
}

describe("catty-server token", () => {
  test("create, list and revoke: a revoked token stops at once, and the browsers it signed in are signed out", async () => {
    const made = tokenCommand("create", "--user", "alice", "--expires", "30d");
    expect(made.code).toBe(0);
    const token = made.out.trim();
    expect(token).toMatch(/^cat_/);
    expect((await whoami(token)).status).toBe(200);
    const cookie = await signIn(token);
    const other = await signIn(server.ownerToken);
    expect((await me(cookie)).status).toBe(200);

    const listed = tokenCommand("list", "--user", "alice", "--json");
    const rows = JSON.parse(listed.out) as Array<{ id: string; user: string; expiresAt: string | null; expired: boolean }>;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: tokenId(token), user: "alice", expired: false });
    // Thirty days from now, give or take the run.
    expect(Math.abs(Date.parse(rows[0]?.expiresAt ?? "") - (Date.now() + 30 * 86_400_000))).toBeLessThan(60_000);
    const table = tokenCommand("list").out;
    expect(table).toMatch(/^ID\s+USER\s+CREATED\s+EXPIRES$/m);
    expect(table).toMatch(new RegExp(`^${tokenId(server.ownerToken)}\\s+owner\\s+.+\\s+never$`, "m"));
    expect(table).toContain(tokenId(token));
    expect(table + listed.out).not.toContain(token);

    const revoked = tokenCommand("revoke", tokenId(token).slice(0, 8));
    expect(revoked.code).toBe(0);
    expect(revoked.out).toContain(`Revoked token ${tokenId(token)} of alice`);
    expect((await whoami(token)).status).toBe(401);
    expect((await me(cookie)).status).toBe(401);
    // Another token's browser is still signed in, and the token is gone from the list.
    expect((await me(other)).status).toBe(200);
    expect(tokenCommand("list").out).not.toContain(tokenId(token));
    // Signing in again with it fails too.
    expect((await fetch(`${server.url}/v1/web/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token }) })).status).toBe(401);
  });

  test("a token past its expiry stops working and is listed as expired", async () => {
    const token = tokenCommand("create", "--user", "bob", "--expires", "1s").out.trim();
    await waitFor(async () => (await whoami(token)).status === 401, { what: "the token to expire" });
    const rows = JSON.parse(tokenCommand("list", "--user", "bob", "--json").out) as Array<{ id: string; expired: boolean }>;
    expect(rows).toEqual([expect.objectContaining({ id: tokenId(token), expired: true })]);
    expect(tokenCommand("revoke", tokenId(token)).code).toBe(0);
  });

  test("bad input is a clear error that changes nothing", async () => {
    const before = tokenCommand("list", "--json").out;
    const notHex = tokenCommand("revoke", "owner");
    expect(notHex.code).toBe(1);
    expect(notHex.err).toContain('"owner" is not a token id');
    const unknown = tokenCommand("revoke", "ffffffffffff");
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('no token has an id starting "ffffffffffff"');
    const badExpiry = tokenCommand("create", "--user", "carol", "--expires", "soon");
    expect(badExpiry.code).toBe(1);
    expect(badExpiry.err).toContain('--expires "soon" is not a duration');
    expect(tokenCommand("list", "--user", "nobody-here").err).toContain('no user named "nobody-here"');
    expect(tokenCommand("list", "--json").out).toBe(before);
    expect((await whoami(server.ownerToken)).status).toBe(200);
  });
});

describe("catty logout", () => {
  /** A new token of `user`, and a CLI home logged in with it. */
  async function loggedIn(user: string) {
    const token = tokenCommand("create", "--user", user).out.trim();
    const home = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-logout-")));
    const env = { ...process.env, HOME: home, CATTY_HOME: home };
    const cli = (...args: string[]) => runCli(env, args);
    expect((await cli("login", "--api", server.url, "--token", token)).exitCode).toBe(0);
    return { token, home, cli };
  }

  test("revokes its token on the server, then forgets it", async () => {
    const { token, home, cli } = await loggedIn("dave");
    expect((await whoami(token)).status).toBe(200);
    const out = await cli("logout");
    expect(out.exitCode).toBe(0);
    expect(out.text).toContain(`the token was revoked on ${server.url}`);
    expect(existsSync(join(home, "credentials.json"))).toBe(false);
    expect((await whoami(token)).status).toBe(401);
    expect(tokenCommand("list", "--user", "dave", "--json").out.trim()).toBe("[]");
  });

  test("a server that cannot be reached: the token is forgotten here, and the message says how to revoke it there", async () => {
    const { token, home, cli } = await loggedIn("erin");
    // The stored login now points at a port where nothing listens.
    const creds = join(home, "credentials.json");
    await Bun.write(creds, (await Bun.file(creds).text()).replace(server.url, "http://127.0.0.1:1"));
    const out = await cli("logout");
    expect(out.exitCode).toBe(0);
    expect(out.text).toContain(`catty-server token revoke ${tokenId(token)}`);
    expect(existsSync(creds)).toBe(false);
    expect((await whoami(token)).status).toBe(200);
  });
});
