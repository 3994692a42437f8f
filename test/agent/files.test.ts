/**
 * The agent's write of a handed file, unsandboxed (the wrapper is the provider's, tested end to
 * end in test/e2e/sandbox.test.ts): fetched whole, written under a free name, never over anything.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { putFile } from "../../agent/files.ts";
import { tempDirs } from "../helpers/fs.ts";

const temp = tempDirs("catty-files-");
const bodies = new Map<string, Uint8Array>();
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: (req) => {
    const body = bodies.get(new URL(req.url).pathname);
    return body ? new Response(body) : new Response("gone", { status: 404 });
  },
});
afterAll(() => server.stop(true));

const NAME = "shot-20261129-140307.png";
const serve = (path: string, bytes: Uint8Array): string => {
  bodies.set(path, bytes);
  return path;
};
const opts = (workspace: string) => ({ serverUrl: server.url.origin, workspace, wrap: [] });

test("written byte for byte under .catty-uploads, the path returned; a second file of the same name does not replace the first", async () => {
  const ws = temp();
  const a = crypto.getRandomValues(new Uint8Array(300_000));
  const b = crypto.getRandomValues(new Uint8Array(10));
  const first = await putFile({ name: NAME, url: serve("/a", a), size: a.length }, opts(ws));
  expect(first).toBe(join(ws, ".catty-uploads", NAME));
  expect(new Uint8Array(readFileSync(first))).toEqual(a);
  const second = await putFile({ name: NAME, url: serve("/b", b), size: b.length }, opts(ws));
  expect(second).toBe(join(ws, ".catty-uploads", "shot-20261129-140307-2.png"));
  expect(new Uint8Array(readFileSync(first))).toEqual(a);
  expect(new Uint8Array(readFileSync(second))).toEqual(b);
  // No temp file left behind.
  expect(readdirSync(join(ws, ".catty-uploads")).sort()).toEqual(["shot-20261129-140307-2.png", NAME]);
});

test("a symlink planted under the name is not followed or replaced", async () => {
  const ws = temp();
  const outside = join(temp(), "target.png");
  mkdirSync(join(ws, ".catty-uploads"));
  symlinkSync(outside, join(ws, ".catty-uploads", NAME));
  const path = await putFile({ name: NAME, url: serve("/c", new Uint8Array([1, 2, 3])), size: 3 }, opts(ws));
  expect(path).toEndWith("-2.png");
  expect(existsSync(outside)).toBe(false);
});

test("refused: a name the server would never send, a short download, a missing one; nothing written", async () => {
  const ws = temp();
  await expect(putFile({ name: "../escape-20261129-140307.png", url: serve("/d", new Uint8Array(1)), size: 1 }, opts(ws))).rejects.toThrow(/refused the file name/);
  await expect(putFile({ name: NAME, url: serve("/e", new Uint8Array(5)), size: 9 }, opts(ws))).rejects.toThrow(/got 5 of 9 bytes/);
  await expect(putFile({ name: NAME, url: "/missing", size: 9 }, opts(ws))).rejects.toThrow(/download failed: 404/);
  expect(existsSync(join(ws, ".catty-uploads"))).toBe(false);
});

test("a file where the directory should be: a clear error", async () => {
  const ws = temp();
  writeFileSync(join(ws, ".catty-uploads"), "not a directory");
  await expect(putFile({ name: NAME, url: serve("/f", new Uint8Array(1)), size: 1 }, opts(ws))).rejects.toThrow(/writing \.catty-uploads\/shot-20261129-140307\.png failed: .+/);
});
