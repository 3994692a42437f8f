/**
 * Disaster recovery through the real binaries: a session saves its workspace, the server dies
 * (kill -9) and its database is lost; `catty-server recover --from-storage` rebuilds it from the
 * data dir's storage and master key, a new token is made, and `catty download` gets the last save
 * back, file for file.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diffTrees, run, startWorkspaceServer, type WorkspaceFixture, writeTree } from "../helpers/workspace.ts";
import { waitFor } from "../helpers/wait.ts";

let fx: WorkspaceFixture;
const scratch = mkdtempSync(join(tmpdir(), "catty-recover-e2e-"));

beforeAll(async () => {
  fx = await startWorkspaceServer({ CATTY_SAVE_FIRST_MS: "300", CATTY_SAVE_INTERVAL_MS: "700" });
}, 60_000);

afterAll(async () => {
  await fx?.close();
  rmSync(scratch, { recursive: true, force: true });
});

test("the database lost after kill -9: recover --from-storage, a new token, and the session's last save downloads as it was", async () => {
  const { user, server, bins } = fx;
  const { label, exitMarker } = await user.newSession(writeTree(join(scratch, "project"), { "a.txt": "before\n", "src/b.ts": "export {};\n" }));
  await user.shell("printf 'after\\n' > a.txt && mkdir -p made && printf 'in the session\\n' > made/c.txt");
  await user.detach(label, exitMarker);
  await waitFor(async () => ((await user.session(label)).saves[0]?.files ?? 0) >= 3, { timeoutMs: 15_000, what: "a save with the session's changes" });
  const before = join(scratch, "before");
  expect((await user.cli(["download", label, before])).code).toBe(0);

  await server.kill9();
  const lost = join(scratch, "lost");
  mkdirSync(lost);
  for (const f of readdirSync(server.dataDir).filter((f) => f.startsWith("catty.db"))) renameSync(join(server.dataDir, f), join(lost, f));
  const recovered = await run([bins.server, "recover", "--from-storage", "--json", "--data-dir", server.dataDir]);
  expect(recovered.code).toBe(0);
  expect(JSON.parse(recovered.stdout)).toMatchObject({ users: 1, sessions: 1, problems: [] });
  const checked = await run([bins.server, "check", "--read-data", "--data-dir", server.dataDir]);
  expect(checked.code).toBe(0);
  const token = await run([bins.server, "token", "create", "--user", "owner", "--data-dir", server.dataDir]);
  expect(token.code).toBe(0);

  await server.start();
  expect((await user.cli(["login", "--api", server.url, "--token", token.stdout.trim()])).code).toBe(0);
  const listed = await user.cli(["list", "--json"]);
  expect(listed.stdout).toContain(label);
  const after = join(scratch, "after");
  const down = await user.cli(["download", label, after]);
  expect(down.code).toBe(0);
  expect(await diffTrees(after, before)).toBe("");
}, 120_000);
