/**
 * The outside review's attack on the agent, raced for real: a program (here a shell loop of its
 * own, running while the agent's parts work) makes directories and files, waits for the watcher,
 * then swaps a directory, a parent, a file, `.git` and `.catty-uploads` for symlinks to a secret
 * directory beside the workspace, plants FIFOs and hard links to a file it could not read. The
 * journal, sync-back's sender and the saver run throughout as the agent runs them (through
 * `workspaceTree`, with the program's user set, as a root agent has it): the secret never reaches
 * a client, a save or the logs, while the program's own files do.
 */
import { afterEach, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { WorkspaceSaver } from "../../agent/saver.ts";
import { SyncSender } from "../../agent/sync-sender.ts";
import { WorkspaceJournal } from "../../agent/watch.ts";
import { workspaceTree } from "../../src/lib/tree.ts";
import { decodeAgentSync } from "../../src/protocol/index.ts";
import { keptLog } from "../helpers/log.ts";
import { tempDirs } from "../helpers/fs.ts";
import { memoryVault } from "../helpers/vault.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-races-");
const closing: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const close of closing.splice(0)) await close();
});

const SECRET = "SECRET-0f3c9a";
const ROUNDS = 60;

/** The program's side: each round makes real content, lets the watcher see it, then swaps it all. */
function attackScript(outside: string, hard: string): string {
  return `
set -u
for i in $(seq ${ROUNDS}); do
  mkdir -p d p/q .git && echo "round $i" > d/f && echo "round $i" > p/q/g && echo "own $i" > own-$i.txt
  echo ref > .git/HEAD
  # the watcher watches d and p/q now (the review waited for that)
  for w in 1 2 3 4 5 6 7 8 9 10; do [ -e d/f ] && break; done
  sleep 0.02
  mv d d.$i && ln -s '${outside}' d
  mv p p.$i && ln -s '${outside}' p
  rm -f f2 && ln -s '${outside}/master-key' f2
  mv .git git.$i && ln -s '${outside}' .git
  rm -rf .catty-uploads && ln -s '${outside}' .catty-uploads
  mkfifo fifo-$i
  ln '${hard}' hard-$i 2>/dev/null || true
  touch d/x p/q/x 2>/dev/null
  sleep 0.02
  # The last round's swaps stay, so the journal is sure to see them whatever the machine's load.
  [ "$i" -lt ${ROUNDS} ] && rm -f d p .git
done
echo finished > finished
`;
}

test("swaps raced against the journal, sync-back and saves: the secret never leaves, the program's files do", async () => {
  const base = tempDir();
  const root = join(base, "workspace");
  const outside = join(base, "data-dir");
  mkdirSync(root);
  mkdirSync(join(outside, "sub"), { recursive: true });
  for (const name of ["master-key", "owner-token", "catty.db", "sub/deep"]) writeFileSync(join(outside, name), `${SECRET} ${name}\n`);
  // A file the program could not read: the agent must not read it for it through a hard link.
  const hard = join(outside, "hard-target");
  writeFileSync(hard, `${SECRET} hard\n`);
  chmodSync(hard, 0o600);
  const running = process.getuid?.() === 0;
  if (running) chownSync(root, 65534, 65534);

  const log = keptLog();
  // As a root agent beside a sandboxed program: the program's user set (a non-root run reads as itself).
  const tree = workspaceTree(root, running ? { uid: 65534, gid: 65534 } : undefined);
  closing.push(() => tree.close());
  let received = "";
  const events: string[] = [];
  // Every kind the journal recorded for each path, as it recorded them: the swaps must have been seen.
  const seen = new Map<string, Set<string>>();
  let seenUpTo = 0;
  const journal: WorkspaceJournal = new WorkspaceJournal({
    tree,
    log,
    scanIntervalMs: 50,
    onChange: () => {
      for (const e of journal.changesSince(seenUpTo)) seen.set(e.path, (seen.get(e.path) ?? new Set()).add(e.kind));
      seenUpTo = journal.seq;
      sender.changed();
    },
  });
  closing.push(() => journal.close());
  const sender: SyncSender = new SyncSender({
    journal,
    tree,
    maxFileBytes: 1024 * 1024,
    send: (msg) => {
      if (msg.type === "sync") events.push(JSON.stringify(msg.event));
      return true;
    },
    sendBinary: (frame) => {
      received += new TextDecoder().decode(decodeAgentSync(frame)?.data ?? new Uint8Array());
      return true;
    },
    buffered: () => 0,
    log,
  });
  const vault = memoryVault();
  let saves = 0;
  const saver = new WorkspaceSaver({
    tree,
    journal,
    log,
    firstDelayMs: 1e9,
    intervalMs: 1e9,
    vault: () => vault,
    transport: { target: async (id) => `http://vault.invalid/${id}`, done: async () => void saves++ },
  });
  await journal.start();
  sender.subscribe(1, { epoch: journal.epoch, seq: 0 });

  // The program runs as another user where the test may arrange it (as the sandbox does).
  const argv = running ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", attackScript(outside, hard)] : ["sh", "-c", attackScript(outside, hard)];
  const attacker = Bun.spawn(argv, { cwd: root, stdout: "ignore", stderr: "ignore" });
  closing.push(() => attacker.kill());
  // Saves, whole and incremental, while the swaps go on.
  let stop = false;
  const saving = (async () => {
    for (let n = 0; !stop; n++) await saver.save(n % 3 === 0 ? "final" : "periodic");
  })();
  expect(await attacker.exited).toBe(0);
  await journal.rescan();
  await waitFor(() => received.includes(`own ${ROUNDS}`), { timeoutMs: 20_000, what: "the program's last file synced back" });
  stop = true;
  await saving;
  await saver.save("final");

  // What the program made did travel: its files, synced back and saved.
  expect(received).toContain("round 1");
  expect(saves).toBeGreaterThan(2);
  const stored = [...vault.blobs.values()].map((b) => new TextDecoder().decode(b)).join("\n");
  expect(stored).toContain(`own ${ROUNDS}`);
  // The secret, nowhere.
  expect(received).not.toContain(SECRET);
  expect(events.join("\n")).not.toContain(SECRET);
  expect(stored).not.toContain(SECRET);
  expect(log.lines.join("\n")).not.toContain(SECRET);
  // The race happened: the journal saw the swapped paths as symlinks, and the directories moved
  // away from under them (d.1, d.2, …) as directories.
  for (const path of ["d", "p"]) expect(seen.get(path)?.has("symlink")).toBe(true);
  expect([...seen].filter(([path, kinds]) => /^d\.\d+$/.test(path) && kinds.has("dir")).length).toBeGreaterThan(0);
}, 60_000);
