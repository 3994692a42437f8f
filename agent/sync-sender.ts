/**
 * Sync-back, agent side: sends each subscribed client the workspace changes it has not seen —
 * first everything since its position in the journal, then each new change as it happens.
 * Rapid rewrites coalesce (a change is read from disk when it is sent, so the last content wins);
 * file bytes travel in binary chunks; files over the cap are announced as skipped.
 */
import { open } from "node:fs/promises";
import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { formatBytes } from "../src/lib/archive.ts";
import type { Log } from "../src/lib/log.ts";
import { encodeAgentSync, type AgentToServer, type SyncEvent, type SyncPosition } from "../src/protocol/index.ts";
import type { JournalEntry, WorkspaceJournal } from "./watch.ts";

const CHUNK = 256 * 1024;
/** Changes arriving within this window go out together. */
const COALESCE_MS = 10;
/** Pause reading files while this much is queued on the link. */
const HIGH_WATER = 16 * 1024 * 1024;

export interface SyncSenderOptions {
  journal: WorkspaceJournal;
  root: string;
  /** `CATTY_SYNC_MAX_BYTES`: larger files are skipped with a notice (default 50 MB). */
  maxFileBytes: number;
  send(msg: AgentToServer): boolean;
  sendBinary(data: Uint8Array): boolean;
  buffered(): number;
  log: Log;
}

export class SyncSender {
  /** Subscribed clients and the journal position each has been sent up to. */
  private readonly subs = new Map<number, { seq: number }>();
  private queue: Promise<void> = Promise.resolve();
  private timer: Timer | undefined;
  private transfer = 0;

  constructor(private readonly opts: SyncSenderOptions) {}

  subscribe(clientId: number, from: SyncPosition): void {
    const seq = from.epoch === this.opts.journal.epoch ? from.seq : 0;
    this.subs.set(clientId, { seq });
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
      if (!(await this.sendEntry(clientId, entry))) return; // the link dropped; the re-attach resumes
      if (this.subs.get(clientId) !== sub) return;
      // Progress per entry, so a catch-up that is cut short resumes after the last whole change.
      sub.seq = Math.max(sub.seq, entry.seq);
      this.event(clientId, { kind: "caught_up", seq: sub.seq });
    }
    if (this.subs.get(clientId) !== sub) return;
    sub.seq = Math.max(sub.seq, upTo);
    this.event(clientId, { kind: "caught_up", seq: sub.seq });
  }

  /** Sends what `entry.path` is now. False when the link is gone. */
  private async sendEntry(clientId: number, entry: JournalEntry): Promise<boolean> {
    const { path, seq } = entry;
    const abs = join(this.opts.root, path);
    const st = await lstat(abs).catch(() => null);
    if (!st) return this.event(clientId, { kind: "delete", seq, path });
    if (st.isDirectory()) return this.event(clientId, { kind: "dir", seq, path });
    if (st.isSymbolicLink()) return this.event(clientId, { kind: "skip", seq, path, reason: "symlinks are not synced back" });
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
    const fh = await open(abs, "r").catch(() => null);
    if (fh) {
      try {
        const buf = new Uint8Array(CHUNK);
        // Never more than the size announced (the client discards a transfer that sends more):
        // a file that grows meanwhile is sent again for its next change.
        while (sent < st.size) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, st.size - sent), null);
          if (bytesRead === 0) break;
          while (this.opts.buffered() > HIGH_WATER) await Bun.sleep(2);
          if (!this.opts.sendBinary(encodeAgentSync(clientId, transfer, buf.subarray(0, bytesRead)))) return false;
          sent += bytesRead;
        }
      } finally {
        await fh.close();
      }
    }
    return this.event(clientId, { kind: "file_end", transfer, bytes: sent });
  }
}
