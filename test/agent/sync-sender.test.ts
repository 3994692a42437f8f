/**
 * The agent's sync-back sender over a real workspace journal (inotify on a temp directory): what
 * it reports for a file is the file's final version, also when the file changes while it is being
 * sent or announced.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SyncSender } from "../../agent/sync-sender.ts";
import { WorkspaceJournal, type JournalEntry } from "../../agent/watch.ts";
import { formatBytes } from "../../src/lib/archive.ts";
import { silentLog } from "../../src/lib/log.ts";
import { decodeAgentSync, type AgentToServer, type SyncEvent } from "../../src/protocol/index.ts";
import { noise, tempDirs } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceTree } from "../../src/lib/tree.ts";

const temp = tempDirs("catty-sync-sender-");
const journals: WorkspaceJournal[] = [];
afterEach(async () => {
  for (const j of journals.splice(0)) await j.close();
});

/** A journal that records only what the test tells it: changes the watcher sees never arrive. */
class ManualJournal {
  readonly epoch = "manual";
  seq = 0;
  private readonly entries = new Map<string, JournalEntry>();
  constructor(private readonly onChange: () => void) {}
  record(path: string): void {
    this.entries.set(path, { path, seq: ++this.seq, kind: "file" });
    this.onChange();
  }
  changesSince(seq: number): JournalEntry[] {
    return [...this.entries.values()].filter((e) => e.seq > seq).sort((a, b) => a.seq - b.seq);
  }
}

interface Harness {
  root: string;
  journal: WorkspaceJournal | ManualJournal;
  events: SyncEvent[];
  /** Bytes received per transfer. */
  bytes: Map<number, Buffer>;
  /** Called for each event before it is recorded. */
  onEvent: (e: SyncEvent) => void;
  /** Called for each chunk of file bytes before it is recorded. */
  onBytes: (transfer: number) => void;
  /** The content of the last completed transfer of `path`. */
  lastFile(path: string): Buffer | null;
  skips(path: string): string[];
}

/** `links`: the client makes symlinks (today's CLI), or is an older one that does not. */
async function harness(maxFileBytes: number, journalKind: "watched" | "manual" = "watched", links = true): Promise<Harness> {
  const root = temp();
  const journal =
    journalKind === "manual"
      ? new ManualJournal(() => sender.changed())
      : new WorkspaceJournal({ tree: workspaceTree(root), log: silentLog, scanIntervalMs: 60_000, onChange: () => sender.changed() });
  if (journal instanceof WorkspaceJournal) journals.push(journal);
  const h: Harness = {
    root,
    journal,
    events: [],
    bytes: new Map(),
    onEvent: () => {},
    onBytes: () => {},
    lastFile(path) {
      let last: Buffer | null = null;
      const paths = new Map<number, string>();
      for (const e of h.events) {
        if (e.kind === "file") paths.set(e.transfer, e.path);
        if (e.kind === "file_end" && paths.get(e.transfer) === path) last = h.bytes.get(e.transfer) ?? Buffer.alloc(0);
      }
      return last;
    },
    skips: (path) => h.events.flatMap((e) => (e.kind === "skip" && e.path === path ? [e.reason] : [])),
  };
  const sender = new SyncSender({
    journal,
    tree: workspaceTree(root),
    maxFileBytes,
    send: (msg) => {
      if (msg.type === "sync") {
        h.onEvent(msg.event);
        h.events.push(msg.event);
      }
      return true;
    },
    sendBinary: (frame) => {
      const chunk = decodeAgentSync(frame);
      if (!chunk) throw new Error("not a sync frame");
      h.onBytes(chunk.transfer);
      h.bytes.set(chunk.transfer, Buffer.concat([h.bytes.get(chunk.transfer) ?? Buffer.alloc(0), chunk.data]));
      return true;
    },
    buffered: () => 0,
    log: silentLog,
  });
  if (journal instanceof WorkspaceJournal) await journal.start();
  sender.subscribe(1, { epoch: journal.epoch, seq: 0, links });
  return h;
}

const capNotice = (size: number, cap: number): string =>
  `${formatBytes(size)} is over the sync-back cap of ${formatBytes(cap)}; get it with \`catty download\``;

describe("sync-back sends a file's final version", () => {
  test("a file over the cap that grows while its skip is announced is announced again, with its final size", async () => {
    const h = await harness(1000, "manual");
    let grown = false;
    h.onEvent = (e) => {
      if (e.kind === "skip" && !grown) {
        grown = true;
        appendFileSync(join(h.root, "huge.bin"), Buffer.alloc(1000, 1)); // still being written
      }
    };
    writeFileSync(join(h.root, "huge.bin"), Buffer.alloc(1500, 1));
    (h.journal as ManualJournal).record("huge.bin"); // one journal entry only: the sender notices the growth itself
    await waitFor(() => h.skips("huge.bin").at(-1) === capNotice(2500, 1000), { what: "the final size to be reported" });
    expect(h.skips("huge.bin")).toEqual([capNotice(1500, 1000), capNotice(2500, 1000)]);
  });

  test("a file rewritten while it is being read is sent again; the last transfer holds the final content", async () => {
    const h = await harness(50 * 1024 * 1024, "manual");
    const first = Buffer.alloc(700 * 1024, "a");
    const final = Buffer.alloc(300 * 1024, "b");
    let rewritten = false;
    h.onBytes = () => {
      if (rewritten) return;
      rewritten = true;
      writeFileSync(join(h.root, "data.bin"), final);
    };
    writeFileSync(join(h.root, "data.bin"), first);
    (h.journal as ManualJournal).record("data.bin");
    await waitFor(() => h.lastFile("data.bin")?.equals(final), { what: "the final content to arrive" });
    expect(h.events.filter((e) => e.kind === "file")).toHaveLength(2);
  });

  test("a version already sent is not sent again when the watcher reports the same write", async () => {
    const h = await harness(1000);
    let grown = false;
    h.onEvent = (e) => {
      if (e.kind === "skip" && !grown) {
        grown = true;
        appendFileSync(join(h.root, "huge.bin"), Buffer.alloc(1000, 1));
      }
    };
    writeFileSync(join(h.root, "huge.bin"), Buffer.alloc(1500, 1));
    await waitFor(() => h.skips("huge.bin").at(-1) === capNotice(2500, 1000), { what: "the final size to be reported" });
    // The journal's entry for the append (the watcher's, or the scan's) finds that version already
    // announced: no third notice.
    const journal = h.journal as WorkspaceJournal;
    await journal.rescan();
    await waitFor(() => h.events.some((e) => e.kind === "caught_up" && e.seq >= journal.seq), { what: "the sender to catch up" });
    expect(h.skips("huge.bin")).toEqual([capNotice(1500, 1000), capNotice(2500, 1000)]);
  });

  test("a file still being written is reported at its final size once it settles", async () => {
    const h = await harness(1000);
    const writer = Bun.spawn(["sh", "-c", "for i in 1 2 3 4 5 6; do head -c 1000 /dev/zero >> huge.bin; sleep 0.02; done"], { cwd: h.root });
    expect(await writer.exited).toBe(0);
    await waitFor(() => h.skips("huge.bin").at(-1) === capNotice(6000, 1000), { what: "the final size to be reported" });
    // While it was being written (every 20 ms, well inside the settle time) it was not reported at every step.
    expect(h.skips("huge.bin").length).toBeLessThan(6);
  });

  test("a file written at once is sent once, whole", async () => {
    const h = await harness(50 * 1024 * 1024);
    writeFileSync(join(h.root, "whole.txt"), "all at once\n");
    await waitFor(() => h.lastFile("whole.txt")?.toString() === "all at once\n", { what: "whole.txt" });
    expect(h.events.filter((e) => e.kind === "file")).toHaveLength(1);
  });
});

test("files handed to the session (.catty-uploads/) are not synced back: they came from the user's machine", async () => {
  const h = await harness(50 * 1024 * 1024);
  mkdirSync(join(h.root, ".catty-uploads"));
  writeFileSync(join(h.root, ".catty-uploads", "shot-20261129-140307.png"), "png bytes");
  writeFileSync(join(h.root, "after.txt"), "written after the upload\n");
  await waitFor(() => h.lastFile("after.txt") !== null, { what: "after.txt" });
  expect(h.events.some((e) => "path" in e && e.path.startsWith(".catty-uploads"))).toBe(false);
});

test("a file that grows while it is sent is cut at the size the file event declared", async () => {
  const root = temp();
  const size = 300 * 1024; // more than one read chunk, so the file grows between reads
  writeFileSync(join(root, "log.txt"), noise(size, 1));
  // The journal seam: one change to send.
  const journal = { epoch: "E", seq: 1, changesSince: () => [{ path: "log.txt", seq: 1, kind: "file" }] } as unknown as WorkspaceJournal;
  const events: SyncEvent[] = [];
  let sent = 0;
  const sender = new SyncSender({
    journal,
    tree: workspaceTree(root),
    maxFileBytes: 50 * 1024 * 1024,
    log: silentLog,
    buffered: () => 0,
    send: (msg: AgentToServer) => {
      if (msg.type === "sync") events.push(msg.event);
      return true;
    },
    sendBinary: (frame) => {
      if (sent === 0) appendFileSync(join(root, "log.txt"), noise(100 * 1024, 2)); // the program keeps writing
      sent += decodeAgentSync(frame)?.data.byteLength ?? 0;
      return true;
    },
  });
  sender.subscribe(7, { epoch: "E", seq: 0 });
  const end = await waitFor(() => events.find((e) => e.kind === "file_end"), { what: "the file to be sent" });
  expect(events.find((e) => e.kind === "file")).toMatchObject({ path: "log.txt", size });
  expect(end).toMatchObject({ bytes: size });
  expect(sent).toBe(size);
});

test("symlinks are sent with their targets, whatever they point to; never one reached through a symlinked parent", async () => {
  const h = await harness(50 * 1024 * 1024, "manual");
  const outside = temp();
  symlinkSync("/etc/hosts", join(outside, "x"));
  const links: Record<string, string> = { abs: "/etc/hosts", up: "../outside", dangling: "missing/file", loop: "loop", inside: "a.txt" };
  for (const [rel, target] of Object.entries(links)) symlinkSync(target, join(h.root, rel));
  symlinkSync(outside, join(h.root, "via"));
  const journal = h.journal as ManualJournal;
  for (const rel of [...Object.keys(links), "via/x", "via"]) journal.record(rel);
  await waitFor(() => h.events.some((e) => e.kind === "caught_up" && e.seq === journal.seq), { what: "the sender to catch up" });
  const sent = h.events.flatMap((e) => (e.kind === "symlink" ? [[e.path, e.target]] : []));
  // `via` is a link like the others; `via/x` is not read through it: below a link, nothing is there.
  expect(Object.fromEntries(sent)).toEqual({ ...links, via: outside });
  expect(h.events.filter((e) => "path" in e && e.path === "via/x").map((e) => e.kind)).toEqual(["delete"]);
  expect(h.events.filter((e) => e.kind === "skip")).toEqual([]);
});

test("a client that does not make symlinks (an older catty) is told they were skipped, and why", async () => {
  const h = await harness(50 * 1024 * 1024, "manual", false);
  symlinkSync("a.txt", join(h.root, "inside"));
  (h.journal as ManualJournal).record("inside");
  await waitFor(() => h.skips("inside").length > 0, { what: "the skip notice" });
  expect(h.skips("inside")).toEqual(["a symlink, which this version of catty does not sync back (update it)"]);
  expect(h.events.some((e) => e.kind === "symlink")).toBe(false);
});
