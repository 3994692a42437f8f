/**
 * `catty login --device` through the real binaries in tmux: it shows a short code, and once a
 * signed-in browser (here its requests) approves it, the CLI stores a new token of that user and
 * works; a denied code ends the login with a clear message and exit 1.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shellExitCode } from "../helpers/session-flow.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceServerForFile } from "../helpers/workspace.ts";

const fixture = workspaceServerForFile();

/** What the browser does: sign in with the owner's token and approve (or deny) the code. */
async function answer(userCode: string, approve: boolean): Promise<void> {
  const login = await fetch(`${fixture().server.url}/v1/web/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: fixture().server.ownerToken }) });
  const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] as string;
  const { csrf } = (await login.json()) as { csrf: string };
  const res = await fetch(`${fixture().server.url}/v1/device/approve`, {
    method: "POST",
    headers: { "content-type": "application/json", cookie, "x-csrf-token": csrf },
    body: JSON.stringify({ userCode, approve }),
  });
  expect(res.status).toBe(200);
}

describe("catty login --device", () => {
  test("approved in the browser: a new token is stored and works; denied: exit 1 with the reason", async () => {
    const home = mkdtempSync(join(tmpdir(), "catty-device-home-"));
    const tmux = new Tmux({ HOME: home, CATTY_HOME: home, PATH: `${fixture().bins.dir}:${process.env.PATH}`, PS1: "$ " });
    tmux.start({ cols: 100, rows: 30 });
    try {
      // The device login is the default on a terminal.
      tmux.type(`catty login --api ${fixture().server.url}; echo LOGIN_EXIT=$?`);
      const shown = await tmux.waitFor(/[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}/, 15_000);
      expect(shown).toContain(`${fixture().server.url}/device`);
      const code = /([B-Z]{4}-[B-Z]{4})/.exec(shown)?.[1] as string;
      await answer(code, true);
      expect(await shellExitCode(tmux, "LOGIN_EXIT", 30_000)).toBe(0);
      expect(tmux.capture()).toContain(`Logged in to ${fixture().server.url} as owner`);
      const creds = JSON.parse(readFileSync(join(home, "credentials.json"), "utf8")) as { token: string };
      expect(creds.token).toMatch(/^cat_/);
      expect(creds.token).not.toBe(fixture().server.ownerToken);
      const list = Bun.spawnSync([fixture().bins.catty, "list", "--json"], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
      expect(list.exitCode).toBe(0);

      tmux.type("clear");
      tmux.type(`rm -f ${join(home, "credentials.json")}; catty login --api ${fixture().server.url} --device; echo LOGIN2_EXIT=$?`);
      const code2 = await waitFor(
        () => [...tmux.capture().matchAll(/([B-Z]{4}-[B-Z]{4})/g)].map((m) => m[1] as string).find((c) => c !== code),
        { timeoutMs: 15_000, what: "a second code on screen" },
      );
      await answer(code2, false);
      expect(await shellExitCode(tmux, "LOGIN2_EXIT", 30_000)).toBe(1);
      expect(tmux.capture()).toContain("denied in the browser");
      expect(existsSync(join(home, "credentials.json"))).toBe(false);
    } finally {
      tmux.kill();
    }
  }, 90_000);
});
