/**
 * The workspace journal's watching (agent/watch.ts), without its safety net (the directory checks
 * are a minute away): what a program writes into directories it has only just made is recorded
 * all the same — a nested tree made and filled at once, many times over, as `mkdir -p a/b/c &&
 * echo > a/b/c/f` does.
 */
import { afterEach, expect, test } from "bun:test";
import { WorkspaceJournal } from "../../agent/watch.ts";
import { silentLog } from "../../src/lib/log.ts";
import { tempDirs } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-watch-");
const journals: WorkspaceJournal[] = [];
afterEach(async () => {
  for (const j of journals.splice(0)) await j.close();
});

test("files written into directories made a moment before are all recorded, with no scan to catch them", async () => {
  const root = tempDir();
  const journal = new WorkspaceJournal({ root, log: silentLog, scanIntervalMs: 60_000, onChange() {} });
  journals.push(journal);
  await journal.start();
  const N = 200;
  const made = Bun.spawn(["sh", "-c", `for i in $(seq ${N}); do mkdir -p t$i/a/b/c && echo $i > t$i/a/b/c/f && echo $i > t$i/a/g; done`], { cwd: root });
  expect(await made.exited).toBe(0);
  const want = Array.from({ length: N }, (_, i) => [`t${i + 1}/a/b/c/f`, `t${i + 1}/a/g`]).flat();
  const recorded = (): Set<string> => new Set(journal.changesSince(0).map((e) => e.path));
  await waitFor(() => want.every((p) => recorded().has(p)), { timeoutMs: 15_000, what: `all ${want.length} files recorded` }).catch((err: Error) => {
    const missing = want.filter((p) => !recorded().has(p));
    throw new Error(`${missing.length} of ${want.length} files were never recorded, e.g. ${missing.slice(0, 5).join(", ")} (${err.message})`);
  });
}, 30_000);
