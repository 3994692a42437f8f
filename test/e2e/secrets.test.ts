/**
 * `catty secrets` through the real binaries, in tmux: hidden input (•, Backspace, Ctrl+C → 130),
 * list/remove/blocked names, the guided GitHub setup and `test github` against a GitHub API
 * stand-in (valid, 401, 503, unreachable). Then a session: the secrets are in the program's
 * environment, `git clone` over HTTPS of a repository that needs the token works through the
 * credential helper the agent sets up (no file written), and the value is nowhere in the
 * server's data dir, its log, the agent's log or the save; `--no-secrets` leaves them out.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeRepo, startGitServer, type GitServer } from "../helpers/git-server.ts";
import { startGitHubStandIn, type GitHubStandIn } from "../helpers/github-api.ts";
import { filesContaining, removeAfterRun } from "../helpers/fs.ts";
import { shellExitCode } from "../helpers/session-flow.ts";
import { startWorkspaceServer, writeTree, type WorkspaceFixture } from "../helpers/workspace.ts";

const GOOD = "ghp_goodtoken0000000000000000000000000000";
let fx: WorkspaceFixture;
let github: GitHubStandIn;
let git: GitServer;
const gitToken = `ghp_git${crypto.randomUUID().replace(/-/g, "")}`;

beforeAll(async () => {
  fx = await startWorkspaceServer({});
  github = startGitHubStandIn({ [GOOD]: { login: "octocat", scopes: "repo, read:org" }, [gitToken]: { login: "gitcat", scopes: "repo" } });
  const repos = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-git-repos-")));
  makeRepo(repos, "private", { "README.md": "private repository content\n" });
  git = startGitServer(repos, gitToken);
}, 60_000);

afterAll(async () => {
  github?.stop();
  git?.stop();
  await fx?.close();
});

const cli = (args: string[], env: Record<string, string> = {}) => fx.user.cli(args, { env: { CATTY_GITHUB_API: github.url, ...env } });

describe("catty secrets", () => {
  test("add reads the value hidden: • for each character, Backspace works, Ctrl+C exits 130 and saves nothing", async () => {
    const tmux = fx.user.freshTerminal();
    tmux.type("catty secrets add MY_TOKEN; echo ADD_EXIT=$?");
    await tmux.waitFor("Value for MY_TOKEN:");
    tmux.type("hunter2X", false);
    await tmux.waitFor("••••••••");
    tmux.keys("BSpace");
    await tmux.waitFor(/Value for MY_TOKEN: •{7}\s*$/m);
    tmux.keys("Enter");
    expect(await shellExitCode(tmux, "ADD_EXIT")).toBe(0);
    const screen = tmux.capture();
    expect(screen).toContain('Secret "MY_TOKEN" saved');
    expect(screen).not.toContain("hunter2");

    tmux.type("catty secrets add OTHER_TOKEN; echo ADD2_EXIT=$?");
    await tmux.waitFor("Value for OTHER_TOKEN:");
    tmux.type("abc", false);
    await tmux.waitFor("•••");
    tmux.keys("C-c");
    expect(await shellExitCode(tmux, "ADD2_EXIT")).toBe(130);
    const list = await cli(["secrets", "list"]);
    expect(list.stdout.trim().split("\n")).toEqual(["MY_TOKEN"]);
  }, 60_000);

  test("set, list (names only), remove; an empty value, an unknown name and blocked names are errors", async () => {
    expect((await cli(["secrets", "set", "NPM_TOKEN", "npm_value_123"])).code).toBe(0);
    const list = await cli(["secrets", "list"]);
    expect(list.stdout).toContain("NPM_TOKEN");
    expect(list.stdout + list.stderr).not.toContain("npm_value_123");
    const empty = await cli(["secrets", "set", "EMPTY_ONE", ""]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("No value provided");
    for (const [name, why] of [["PATH", "set by the session"], ["ANTHROPIC_API_KEY", "--own-api-key"], ["AWS_SECRET_ACCESS_KEY", "credentials"], ["lower", "not a valid name"]]) {
      const r = await cli(["secrets", "set", name as string, "x"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(why as string);
    }
    const missing = await cli(["secrets", "remove", "NOT_THERE"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('No secret named "NOT_THERE"');
    expect((await cli(["secrets", "remove", "NPM_TOKEN"])).code).toBe(0);
    expect((await cli(["secrets", "list"])).stdout).not.toContain("NPM_TOKEN");
  }, 30_000);

  test("add github: the guided setup checks the token with GitHub and stores it under both names; test github", async () => {
    const tmux = fx.user.freshTerminal();
    tmux.type(`CATTY_GITHUB_API=${github.url} catty secrets add github; echo GH_EXIT=$?`);
    await tmux.waitFor("scope");
    await tmux.waitFor("Open that page in your browser? [Y/n]");
    tmux.type("n");
    await tmux.waitFor("GitHub token:");
    tmux.type(GOOD);
    expect(await shellExitCode(tmux, "GH_EXIT")).toBe(0);
    expect(tmux.capture()).toContain("GitHub token saved for @octocat");
    expect(tmux.capture()).not.toContain(GOOD);
    const names = (await cli(["secrets", "list"])).stdout;
    expect(names).toContain("GH_TOKEN");
    expect(names).toContain("GITHUB_TOKEN");
    expect(github.requests.at(-1)).toEqual({ path: "/user", authorization: `Bearer ${GOOD}` });

    const ok = await cli(["secrets", "test", "github"]);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toContain("signed in as @octocat (scopes: repo, read:org)");

    // A token GitHub refuses, GitHub failing, GitHub unreachable: each says so, exit 1.
    await cli(["secrets", "set", "GH_TOKEN", "ghp_wrong"]);
    const bad = await cli(["secrets", "test", "github"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("not valid (401)");
    github.failWith = 503;
    const down = await cli(["secrets", "test", "github"]);
    github.failWith = null;
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("answered 503");
    const gone = await cli(["secrets", "test", "github"], { CATTY_GITHUB_API: "http://127.0.0.1:9" });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("Could not reach the GitHub API at http://127.0.0.1:9");
    // Removing one name removes both.
    expect((await cli(["secrets", "remove", "GITHUB_TOKEN"])).stderr).toContain('Removed "GH_TOKEN" and "GITHUB_TOKEN"');
  }, 60_000);
});

describe("secrets in a session", () => {
  test("in the program's environment, git clone with the token works, and the value is kept nowhere", async () => {
    const value = `sv_${crypto.randomUUID()}`;
    await cli(["secrets", "set", "MY_SECRET", value]);
    await cli(["secrets", "set", "GH_TOKEN", gitToken]);
    await cli(["secrets", "set", "GH_HOST", new URL(git.url).host]);
    const project = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-secrets-proj-")));
    writeTree(project, { "a.txt": "a\n" });
    const { label, exitMarker } = await fx.user.newSession(project, ["--no-sync-back"]);
    // Compared by its hash: a value printed on the terminal would be in the session's last screen.
    const hash = new Bun.CryptoHasher("sha256").update(value).digest("hex");
    expect(await fx.user.shell('printf %s "$MY_SECRET" | sha256sum')).toContain(hash);
    // A private repository over HTTP(S), through the helper git finds in its environment.
    const cloned = await fx.user.shell(`git clone -q ${git.url}/private.git cloned && cat cloned/README.md`, 30_000);
    expect(cloned).toContain("private repository content");
    expect(git.users).toContain("x-access-token");
    // The helper gives the token to no other host.
    const other = await fx.user.shell(`printf 'protocol=https\\nhost=evil.example\\n\\n' | git credential fill 2>&1 </dev/null | grep -c password= ; true`);
    expect(other).not.toContain(gitToken);
    await fx.user.detach(label, exitMarker);
    expect((await fx.user.cli(["stop", label])).code).toBe(0);

    const saved = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-secrets-save-")));
    expect((await fx.user.cli(["download", label, join(saved, "out")])).code).toBe(0);
    for (const secret of [value, gitToken]) {
      expect(filesContaining(fx.server.dataDir, secret)).toEqual([]);
      expect(filesContaining(saved, secret)).toEqual([]);
      expect(fx.server.output).not.toContain(secret);
    }

    // --no-secrets: none of them.
    const second = await fx.user.newSession(project, ["--no-sync-back", "--no-secrets"]);
    expect(await fx.user.shell('echo "none=[${MY_SECRET}]"')).toContain("none=[]");
    fx.user.tmux.type("exit 0");
    expect(await fx.user.exitCode(second.exitMarker)).toBe(0);
  }, 120_000);

  test("the server refuses a request carrying a blocked name", async () => {
    const res = await fx.user.api("POST", "/v1/sessions", { command: ["true"], secrets: { PATH: "/evil" } });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("set by the session");
  });
});
