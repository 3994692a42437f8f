import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { restoreWorkspace } from "../../agent/restore.ts";
import { packToBytes } from "../../src/lib/archive.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";
import { craftTarGz } from "../helpers/workspace.ts";

const temp = tempDirs("catty-restore-");
/** The server's archives by path; anything else is a 404. */
const archives = new Map<string, Uint8Array>();
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch(req) {
    const body = archives.get(new URL(req.url).pathname);
    return body ? new Response(body) : new Response("no such upload", { status: 404 });
  },
});
afterAll(() => server.stop(true));
const serverUrl = `http://127.0.0.1:${server.port}`;

function dirs(): { workspace: string; stateDir: string } {
  const root = temp();
  const stateDir = join(root, "agent-state");
  mkdirSync(stateDir);
  return { workspace: join(root, "workspace"), stateDir };
}

describe("restoring the initial workspace", () => {
  test("downloads the archive and extracts it into the workspace; no temp file is left", async () => {
    const src = writeTree(temp(), { "readme.md": "hi\n", "src/main.ts": "export {};\n", "empty/": "" });
    const { data } = await packToBytes({ root: src, mode: "upload" });
    archives.set("/uploads/one", data);
    const { workspace, stateDir } = dirs();
    const stats = await restoreWorkspace({ url: "/uploads/one", size: data.length }, { serverUrl, workspace, stateDir });
    expect(stats.files).toBe(2);
    expect(readFileSync(join(workspace, "src/main.ts"), "utf8")).toBe("export {};\n");
    expect(existsSync(join(workspace, "empty"))).toBe(true);
    expect(readdirSync(stateDir)).toEqual([]);
  });

  test("a failed download says so and leaves no workspace", async () => {
    const { workspace, stateDir } = dirs();
    await expect(restoreWorkspace({ url: "/uploads/missing", size: null }, { serverUrl, workspace, stateDir })).rejects.toThrow(
      "download failed: 404",
    );
    expect(existsSync(workspace)).toBe(false);
    expect(readdirSync(stateDir)).toEqual([]);
  });

  test("a download shorter than the server said is refused", async () => {
    const src = writeTree(temp(), { "a.txt": "a\n" });
    const { data } = await packToBytes({ root: src, mode: "upload" });
    archives.set("/uploads/short", data);
    const { workspace, stateDir } = dirs();
    await expect(restoreWorkspace({ url: "/uploads/short", size: data.length + 10 }, { serverUrl, workspace, stateDir })).rejects.toThrow(
      "download incomplete",
    );
    expect(existsSync(workspace)).toBe(false);
  });

  test("a hostile archive is refused and nothing is written, inside the workspace or beside it", async () => {
    archives.set(
      "/uploads/evil",
      await craftTarGz([
        { header: { name: "ok.txt" }, data: "fine" },
        { header: { name: "../escaped.txt" }, data: "evil" },
      ]),
    );
    const { workspace, stateDir } = dirs();
    await expect(restoreWorkspace({ url: "/uploads/evil", size: null }, { serverUrl, workspace, stateDir })).rejects.toThrow();
    expect(existsSync(workspace)).toBe(false);
    expect(readdirSync(join(workspace, "..")).sort()).toEqual(["agent-state"]);
    expect(readdirSync(stateDir)).toEqual([]);
  });
});
