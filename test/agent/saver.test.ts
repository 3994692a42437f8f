/** The saver's change detection: what a save would contain, fingerprinted without reading contents. */
import { expect, test } from "bun:test";
import { chmodSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fingerprint } from "../../agent/saver.ts";
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
