/**
 * Sync-back, agent side: sends each subscribed client the workspace changes it has not seen —
 * first everything since its position in the journal, then each new change as it happens.
 * Rapid rewrites coalesce (a change is read from disk when it is sent, so the last content wins);
 * file bytes travel in binary chunks; files over the cap are announced as skipped; a symlink goes
 * as its target, whatever it points to (the client decides whether it may make it).
 *
 * A file still being written is not sent (or reported) half-way: the sender waits until it has
 * settled (size and mtime unchanged across a short re-check), and a file that changed while it was
 * read or announced is sent again, so what a client gets last is the file's final version. (A change
 * after that is a new journal entry, sent in its turn.)
 *
 * Files are looked at and read through `Tree` (src/lib/tree.ts): never through a symlink, a
 * parent directory swapped for one included, and only as the program's user could read them.
 */
import { closeSync, readSync, type Stats } from "node:fs";
import { formatBytes } from "../src/lib/archive.ts";
import type { Log } from "../src/lib/log.ts";
import { linkTargetProblem } from "../src/lib/safe-fs.ts";
import type { Tree } from "../src/lib/tree.ts";
import { encodeAgentSync, type AgentToServer, type SyncEvent, type SyncPosition } from "../src/protocol/index.ts";
import type { JournalEntry } from "./watch.ts";

const CHUNK = 256 * 1024;
/** Changes arriving within this window go out together. */
const COALESCE_MS = 10;
/** Pause reading files while this much is queued on the link. */
const HIGH_WATER = 16 * 1024 * 1024;
/** A file unchanged for this long counts as written; a fresher one is looked at again first. */
const SETTLE_MS = 100;
/** A file that keeps changing is sent as it is after this long (its next change is sent later). */
const SETTLE_MAX_MS = 2_000;
/** Times one entry is sent again because it changed while it was being sent. */
const RESENDS = 3;

interface Subscription {
  seq: number;
  /** Path → version key of the file (or skip notice) last sent. */
  sent: Map<string, string>;
  /** The client makes symlinks (`SyncPosition.links`). */
  links: boolean;
}

const versionKey = (st: Stats): string => `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;

/** The same version of a path: type, size, mtime and inode unchanged. */
function sameVersion(a: Stats | null, b: Stats | null): boolean {
  if (!a || !b) return a === b;
  return a.mode === b.mode && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}

/** The path's stats once it has stopped changing (or after `SETTLE_MAX_MS`); null when it is gone. */
async function settled(tree: Tree, rel: string): Promise<Stats | null> {
  const deadline = Date.now() + SETTLE_MAX_MS;
  let st = tree.lstat(rel);
  while (st?.isFile() && Date.now() - st.mtimeMs < SETTLE_MS && Date.now() < deadline) {
    await Bun.sleep(SETTLE_MS);
    const again = tree.lstat(rel);
    if (sameVersion(st, again)) return again;
    st = again;
  }
  return st;
}

export interface SyncSenderOptions {
  /** The workspace journal (`WorkspaceJournal`): what changed, in order. */
  journal: { readonly epoch: string; readonly seq: number; changesSince(seq: number): JournalEntry[] };
  /** The workspace (`workspaceTree`). */
  tree: Tree;
  /** `CATTY_SYNC_MAX_BYTES`: larger files are skipped with a notice (default 50 MB). */
  maxFileBytes: number;
  send(msg: AgentToServer): boolean;
  sendBinary(data: Uint8Array): boolean;
  buffered(): number;
  log: Log;
}

export class SyncSender {
  /** Subscribed clients: the journal position each has been sent up to, and the version of each
   * file (or skip notice) this subscription sent, so a second journal entry for a version already
   * sent (the watcher saw the write the sender re-sent) does not send it twice. */
  private readonly subs = new Map<number, Subscription>();
  private queue: Promise<void> = Promise.resolve();
  private timer: Timer | undefined;
  private transfer = 0;

  constructor(private readonly opts: SyncSenderOptions) {}

  subscribe(clientId: number, from: SyncPosition): void {
    const seq = from.epoch === this.opts.journal.epoch ? from.seq : 0;
    this.subs.set(clientId, { seq, sent: new Map(), links: from.links === true });
    this.event(clientId, { kind: "start", epoch: this.opts.journal.epoch, seq });
    this.enqueue(() => this.catchUp(clientId));
  }

  unsubscribe(clientId: number): void {
    this.subs.delete(clientId);
  }

  /** The link dropped: the server re-attaches the clients that are still there. */
  unsubscribeAll(): void {
    this.subs.clear();
  }

  /** The journal recorded changes: send them to every subscriber soon. */
  changed(): void {
    if (this.timer || this.subs.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const id of this.subs.keys()) this.enqueue(() => this.catchUp(id));
    }, COALESCE_MS);
  }

  private enqueue(job: () => Promise<void>): void {
    this.queue = this.queue.then(job).catch((err: unknown) => this.opts.log.warn("sync-back send failed", { err }));
  }

  private event(clientId: number, event: SyncEvent): boolean {
    return this.opts.send({ type: "sync", clientId, event });
  }

  private async catchUp(clientId: number): Promise<void> {
    const sub = this.subs.get(clientId);
    if (!sub) return;
    const upTo = this.opts.journal.seq;
    if (upTo <= sub.seq) return;
    for (const entry of this.opts.journal.changesSince(sub.seq)) {
      if (this.subs.get(clientId) !== sub) return; // unsubscribed, or subscribed again: that catch-up takes over
      if (!(await this.sendEntry(clientId, sub, entry))) return; // the link dropped; the re-attach resumes
      if (this.subs.get(clientId) !== sub) return;
      // Progress per entry, so a catch-up that is cut short resumes after the last whole change.
      sub.seq = Math.max(sub.seq, entry.seq);
      this.event(clientId, { kind: "caught_up", seq: sub.seq });
    }
    if (this.subs.get(clientId) !== sub) return;
    sub.seq = Math.max(sub.seq, upTo);
    this.event(clientId, { kind: "caught_up", seq: sub.seq });
  }

  /** Sends what `entry.path` is now, again if it changed meanwhile. False when the link is gone. */
  private async sendEntry(clientId: number, sub: Subscription, entry: JournalEntry): Promise<boolean> {
    const { tree } = this.opts;
    for (let attempt = 0; ; attempt++) {
      const st = await settled(tree, entry.path);
      const version = st?.isFile() ? versionKey(st) : null;
      if (version !== null && sub.sent.get(entry.path) === version) return true;
      if (!(await this.sendVersion(clientId, sub, entry, st))) return false;
      if (version === null) sub.sent.delete(entry.path);
      else sub.sent.set(entry.path, version);
      if (version === null || attempt >= RESENDS) return true;
      if (sameVersion(st, tree.lstat(entry.path))) return true;
      this.opts.log.debug("sync-back: a file changed while it was sent; sending it again", { path: entry.path });
    }
  }

  /** Sends one version of a path, described by `st` (null: gone). False when the link is gone. */
  private async sendVersion(clientId: number, sub: Subscription, entry: JournalEntry, st: Stats | null): Promise<boolean> {
    const { path, seq } = entry;
    if (!st) return this.event(clientId, { kind: "delete", seq, path });
    if (st.isDirectory()) return this.event(clientId, { kind: "dir", seq, path });
    if (st.isSymbolicLink()) {
      if (!sub.links) return this.event(clientId, { kind: "skip", seq, path, reason: "a symlink, which this version of catty does not sync back (update it)" });
      // Read beneath the opened root, never followed. Gone or no longer a link: what replaced it
      // is a change of its own, sent in its turn.
      const target = this.opts.tree.readlink(path);
      if (target === null) return true;
      const problem = linkTargetProblem(target);
      if (problem) return this.event(clientId, { kind: "skip", seq, path, reason: `it is ${problem}` });
      return this.event(clientId, { kind: "symlink", seq, path, target });
    }
    if (!st.isFile()) return true;
    if (st.size > this.opts.maxFileBytes) {
      return this.event(clientId, {
        kind: "skip",
        seq,
        path,
        reason: `${formatBytes(st.size)} is over the sync-back cap of ${formatBytes(this.opts.maxFileBytes)}; get it with \`catty download\``,
      });
    }
    const transfer = (this.transfer = this.transfer >= 0xfffffffe ? 1 : this.transfer + 1);
    if (!this.event(clientId, { kind: "file", seq, path, size: st.size, transfer })) return false;
    let sent = 0;
    const fd = this.opts.tree.openFile(path, st);
    if (fd !== null) {
      try {
        const buf = new Uint8Array(CHUNK);
        // Never more than the size announced (the client discards a transfer that sends more):
        // a file that grows meanwhile is sent again for its next change.
        while (sent < st.size) {
          const bytesRead = readSync(fd, buf, 0, Math.min(CHUNK, st.size - sent), sent);
          if (bytesRead === 0) break;
          while (this.opts.buffered() > HIGH_WATER) await Bun.sleep(2);
          if (!this.opts.sendBinary(encodeAgentSync(clientId, transfer, buf.subarray(0, bytesRead)))) return false;
          sent += bytesRead;
        }
      } finally {
        closeSync(fd);
      }
    }
    return this.event(clientId, { kind: "file_end", transfer, bytes: sent });
  }
}
