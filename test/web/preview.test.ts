/**
 * Preview links in headless Chromium against a real server on port 0 and a real agent: a session
 * runs a small dev server (files and a WebSocket on one port, test/helpers/port-servers.ts); the
 * dashboard lists the port, its link opens `LABEL-PORT.localhost:<port>` signed in (a one-use
 * ticket exchanged for a cookie of that host alone), the page loads its assets and keeps a live
 * WebSocket, and it can neither see the dashboard's cookie nor call its API. Another user gets
 * 404. A share link (`catty forward --share`) works signed out until `catty forward --revoke`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { createUserToken, openStore } from "../../server/startup.ts";
import { readServerConfig } from "../../server/config.ts";
import { launchBrowser } from "../helpers/browser.ts";
import { removeAfterRun } from "../helpers/fs.ts";
import { freePort } from "../helpers/ports.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

let server: TestServer;
let browser: Browser;
let label = "";
let dashboard = "";
const dev = freePort();
const ROOT = join(import.meta.dir, "../..");

beforeAll(async () => {
  server = await startTestServer();
  browser = await launchBrowser();
  // The dashboard as a user opens it on this machine: at localhost.
  dashboard = `http://localhost:${server.port}`;
  const site = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-preview-site-")));
  writeFileSync(join(site, "index.html"), `<!doctype html><link rel="stylesheet" href="/style.css"><h1>Preview</h1><p id="status">connecting</p><script src="/app.js"></script>`);
  writeFileSync(join(site, "style.css"), "h1 { color: rgb(255, 0, 0); }");
  writeFileSync(
    join(site, "app.js"),
    `const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/hmr");
     let n = 0;
     ws.onopen = () => ws.send("ping " + ++n);
     ws.onmessage = (e) => { document.getElementById("status").textContent = "live: " + e.data; setTimeout(() => ws.send("ping " + ++n), 50); };`,
  );
  const res = await fetch(`${server.url}/v1/sessions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${server.ownerToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ command: ["bash", "-c", `cd ${site} && exec ${process.execPath} ${ROOT}/test/helpers/port-servers.ts ${dev} ${freePort()} ${freePort()}`] }),
  });
  label = ((await res.json()) as { label: string }).label;
  await waitFor(async () => {
    const s = (await (await fetch(`${server.url}/v1/sessions/${label}`, { headers: { Authorization: `Bearer ${server.ownerToken}` } })).json()) as { ports: Array<{ port: number }> };
    return s.ports.some((p) => p.port === dev);
  }, { timeoutMs: 30_000, what: "the dev server's port" });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

async function signedIn(context: BrowserContext, token: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(dashboard);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Refresh" }).waitFor();
  return page;
}

/** `catty` from source against the test server. */
async function catty(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const home = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-preview-home-")));
  const proc = Bun.spawn([process.execPath, join(ROOT, "src/cli.ts"), ...args], {
    env: { ...process.env, CATTY_HOME: home, HOME: home, CATTY_API_ADDR: dashboard, CATTY_TOKEN: server.ownerToken, CATTY_NO_UPDATE_CHECK: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** The page is the dev server's, with its stylesheet and a WebSocket that keeps answering. */
async function expectLive(page: Page): Promise<void> {
  await page.getByRole("heading", { name: "Preview" }).waitFor();
  expect(await page.getByRole("heading", { name: "Preview" }).evaluate((h) => (globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }).getComputedStyle(h).color)).toBe("rgb(255, 0, 0)");
  await page.getByText(/live: ping [3-9]/).waitFor({ timeout: 15_000 });
}

describe("preview links", () => {
  test("the dashboard's port link opens the preview signed in: assets, a live WebSocket, and no way to the dashboard's cookie or API", async () => {
    const context = await browser.newContext();
    try {
      const page = await signedIn(context, server.ownerToken);
      const link = page.getByRole("link", { name: `Open port ${dev} of ${label}` });
      await link.waitFor();
      expect(await link.textContent()).toContain(`${dev} · `);
      const [preview] = await Promise.all([context.waitForEvent("page"), link.click()]);
      await expectLive(preview);
      const url = new URL(preview.url());
      expect(url.host).toBe(`${label}-${dev}.localhost:${server.port}`);

      // The preview host has its own cookie; the dashboard's is neither sent there nor readable.
      const cookies = await context.cookies(`http://${url.host}/`);
      expect(cookies.map((c) => c.name)).toEqual(["catty_preview"]);
      expect(cookies[0]?.httpOnly).toBe(true);
      expect(await preview.evaluate("document.cookie")).toBe("");
      // A page of the session calling the dashboard's API with the browser's cookie gets nothing.
      const answer = await preview.evaluate(async (origin) => {
        try {
          const r = await fetch(`${origin}/v1/sessions`, { credentials: "include" });
          return `read ${r.status}`;
        } catch {
          return "blocked";
        }
      }, dashboard);
      expect(answer).toBe("blocked");
      const sent = await preview.evaluate(async (origin) => {
        const r = await fetch(`${origin}/v1/sessions`, { credentials: "include", mode: "no-cors", method: "POST", body: "{}" });
        return r.type;
      }, dashboard);
      expect(sent).toBe("opaque");
      // That POST started nothing.
      const sessions = (await (await fetch(`${server.url}/v1/sessions`, { headers: { Authorization: `Bearer ${server.ownerToken}` } })).json()) as unknown[];
      expect(sessions).toHaveLength(1);

      // The ticket in the link worked once.
      const again = await context.newPage();
      const ticketUrl = `http://${url.host}/__catty/signin?ticket=pvw_not-a-real-ticket-at-all`;
      expect((await again.goto(ticketUrl))?.status()).toBe(401);
    } finally {
      await context.close();
    }
  }, 60_000);

  test("another user gets 404 for the preview; a browser without the cookie is asked to sign in", async () => {
    const store = await openStore(readServerConfig({ "data-dir": server.dataDir }));
    const mallory = await createUserToken(store, "mallory");
    store.close();
    const context = await browser.newContext();
    try {
      const page = await signedIn(context, mallory);
      const res = await page.goto(`${dashboard}/v1/sessions/${label}/preview/${dev}`);
      expect(res?.status()).toBe(404);
      const direct = await page.goto(`http://${label}-${dev}.localhost:${server.port}/`);
      expect(direct?.status()).toBe(401);
      expect(await page.content()).not.toContain("Preview</h1><p");
    } finally {
      await context.close();
    }
  }, 30_000);

  test("catty forward --share: the link works signed out, the dashboard lists it, and --revoke ends it", async () => {
    const made = await catty(["forward", label, String(dev), "--share", "--expires", "2h"]);
    expect(made.code).toBe(0);
    const url = made.stdout.trim();
    expect(url).toMatch(new RegExp(`^http://${label}-${dev}\\.localhost:${server.port}/__catty/share/shr_[\\w-]+$`));

    const owner = await browser.newContext();
    const stranger = await browser.newContext();
    try {
      const dash = await signedIn(owner, server.ownerToken);
      await dash.getByText(`shared ${dev} until`).waitFor();
      const page = await stranger.newPage();
      await page.goto(url);
      await expectLive(page);
      expect(new URL(page.url()).pathname).toBe("/");

      const revoked = await catty(["forward", label, String(dev), "--revoke"]);
      expect(revoked.code).toBe(0);
      expect(revoked.stderr).toContain("Revoked 1 link");
      expect((await page.reload())?.status()).toBe(404);
      expect((await (await stranger.newPage()).goto(url))?.status()).toBe(404);
    } finally {
      await owner.close();
      await stranger.close();
    }
  }, 60_000);
});
