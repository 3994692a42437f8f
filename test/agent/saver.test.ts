/** The saver's change detection: what a save would contain, fingerprinted without reading contents; ticks the journal says nothing happened in skip even that. */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FULL_CHECK_EVERY, fingerprint, WorkspaceSaver } from "../../agent/saver.ts";
import { silentLog } from "../../src/lib/log.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";

const tempDir = tempDirs("catty-saver-");

test("the fingerprint changes with what a save holds, not with excluded paths or what a symlink points into", async () => {
  const base = tempDir();
  const root = writeTree(join(base, "ws"), { "a.txt": "a", "src/b.ts": "b", "node_modules/x/i.js": "dep", "empty/": "" });
  writeTree(join(base, "outside"), { "o.txt": "o" });
  symlinkSync(join(base, "outside"), join(root, "link"));
  const first = await fingerprint(root);
  expect(await fingerprint(root)).toBe(first);

  // Not in a save: excluded folders, and anything behind a symlink.
  writeFileSync(join(root, "node_modules/x/i.js"), "changed dependency");
  writeFileSync(join(base, "outside/o.txt"), "changed outside");
  writeFileSync(join(base, "outside/new.txt"), "new outside");
  expect(await fingerprint(root)).toBe(first);

  // In a save: contents (by size and mtime), modes, new and removed entries, link targets.
  const changes: Array<() => void> = [
    () => utimesSync(join(root, "src/b.ts"), new Date(1_000_000), new Date(1_000_000)),
    () => chmodSync(join(root, "a.txt"), 0o600),
    () => writeFileSync(join(root, "new.txt"), ""),
    () => rmSync(join(root, "empty"), { recursive: true }),
    () => {
      rmSync(join(root, "link"));
      symlinkSync("a.txt", join(root, "link"));
    },
  ];
  let previous = first;
  for (const change of changes) {
    change();
    const now = await fingerprint(root);
    expect(now).not.toBe(previous);
    previous = now;
  }
});

describe("periodic saves with the journal's change counter", () => {
  /** A saver whose transport records the saves it is asked for (and stores them at once). */
  function saver(workspace: string, changes: () => number) {
    const stored: string[] = [];
    const s = new WorkspaceSaver({
      workspace,
      stateDir: tempDir(),
      log: silentLog,
      firstDelayMs: 60_000,
      intervalMs: 60_000,
      changes,
      transport: {
        target: async (id) => `${storage.url.origin}/${id}`,
        done: async (id) => void stored.push(id),
      },
    });
    return { s, stored };
  }
  const storage = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(null, { status: 200 }) });
  afterAll(() => storage.stop(true));

  test("a tick with no recorded change skips the scan; a recorded change is saved; every tenth tick scans anyway", async () => {
    const ws = tempDir();
    writeTree(ws, { "a.txt": "one\n" });
    let counter = 0;
    const { s, stored } = saver(ws, () => counter);
    expect((await s.save("initial")).kind).toBe("stored");
    // A change the journal has not recorded yet: the next ticks do not even look.
    writeTree(ws, { "b.txt": "two\n" });
    for (let i = 0; i < FULL_CHECK_EVERY - 1; i++) expect((await s.save("periodic")).kind).toBe("unchanged");
    expect(stored).toHaveLength(1);
    // The tenth tick scans and finds it.
    expect((await s.save("periodic")).kind).toBe("stored");
    // Recorded at once: the next tick saves it.
    writeTree(ws, { "c.txt": "three\n" });
    counter++;
    expect((await s.save("periodic")).kind).toBe("stored");
    // The final save always scans.
    writeTree(ws, { "d.txt": "four\n" });
    expect((await s.save("final")).kind).toBe("stored");
    expect(stored).toHaveLength(4);
  });

  test("after a failed save the next tick scans again, whatever the counter says", async () => {
    const ws = tempDir();
    writeTree(ws, { "a.txt": "one\n" });
    let fail = true;
    const s = new WorkspaceSaver({
      workspace: ws,
      stateDir: tempDir(),
      log: silentLog,
      firstDelayMs: 60_000,
      intervalMs: 60_000,
      changes: () => 0,
      transport: {
        target: async (id) => `${storage.url.origin}/${id}`,
        done: async () => {
          if (fail) throw new Error("storage down");
        },
      },
    });
    expect((await s.save("initial")).kind).toBe("failed");
    fail = false;
    expect((await s.save("periodic")).kind).toBe("stored");
  });
});
