/**
 * `catty-server recover --from-storage`: rebuilds the database's part of the saves from the
 * bucket and the master key alone, into an empty database (restic's `repair index`). Users come
 * back from their records (id, name, wrapped key; no tokens), the index from each pack's header
 * (`pack-header.ts`), sessions and saves from the saves' records (`catalog.ts`): every session
 * ended, with its label and owner. What cannot be read is reported, not guessed: a pack with no
 * header (written before packs had one) or a damaged one, a record that does not open.
 */
import type { BlobStore } from "../blobs/types.ts";
import type { SessionRow, Store } from "../store/types.ts";
import { readSaveRecord, readUserRecord, SAVE_RECORDS, saveRecordKey, USER_RECORDS, type SaveRecord } from "./catalog.ts";
import { packPrefix } from "./collect.ts";
import { unwrapUserKeys } from "./crypto.ts";
import { readPackTail } from "./pack-header.ts";

export interface Progress {
  step: "users" | "packs" | "saves";
  done: number;
  total: number;
}

export interface RecoverReport {
  users: number;
  packs: number;
  blobs: number;
  sessions: number;
  saves: number;
  /** What could not be recovered, one line each. */
  problems: string[];
}

export interface RecoverDeps {
  store: Store;
  blobs: BlobStore;
  master: Buffer;
  onProgress?: (p: Progress) => void;
}

/** The record under `key`, opened by `open`; null, with the problem reported, when it cannot be. */
async function recordAt<T>(blobs: BlobStore, report: RecoverReport, key: string, open: (bytes: Uint8Array) => Promise<T>): Promise<T | null> {
  try {
    const bytes = await blobs.getBytes(key);
    if (!bytes) throw new Error(`${key} vanished while it was read.`);
    return await open(bytes);
  } catch (err) {
    report.problems.push((err as Error).message);
    return null;
  }
}

export async function recoverFromStorage(deps: RecoverDeps): Promise<RecoverReport> {
  const { store, blobs, master } = deps;
  const progress = deps.onProgress ?? (() => {});
  if ((await store.countUsers()) > 0) {
    throw new Error("The database is not empty. Recover into an empty one: a new --data-dir (SQLite), or a new empty PostgreSQL database (CATTY_DATABASE_URL).");
  }
  const report: RecoverReport = { users: 0, packs: 0, blobs: 0, sessions: 0, saves: 0, problems: [] };
  const records = await blobs.list(USER_RECORDS);
  for (const [i, info] of records.entries()) {
    progress({ step: "users", done: i, total: records.length });
    const user = await recordAt(blobs, report, info.key, (bytes) => readUserRecord(master, info.key, bytes));
    if (!user) continue;
    if (info.key !== `${USER_RECORDS}${user.id}`) {
      report.problems.push(`${info.key} holds the record of another user (${user.id}); skipped.`);
      continue;
    }
    let keys;
    try {
      keys = unwrapUserKeys(master, user.wrapped);
      await store.insertUser({ id: user.id, name: user.name, createdAt: user.createdAt });
      await store.insertUserKey(user.id, user.wrapped);
    } catch (err) {
      report.problems.push(`User ${user.name} (${info.key}) could not be recovered: ${(err as Error).message}`);
      continue;
    }
    report.users++;

    const packs = await blobs.list(packPrefix(user.id));
    for (const [p, pack] of packs.entries()) {
      progress({ step: "packs", done: p, total: packs.length });
      const header = await readPackTail(blobs, keys, pack.key, pack.size);
      if (!header.ok) {
        report.problems.push(header.message);
        continue;
      }
      await store.insertBlobs(user.id, header.rows);
      report.packs++;
      report.blobs += header.rows.length;
    }

    const saves = await blobs.list(`${SAVE_RECORDS}${user.id}/`);
    const sessions = new Map<string, { session: SaveRecord["session"]; latest: string }>();
    for (const [s, info] of saves.entries()) {
      progress({ step: "saves", done: s, total: saves.length });
      const record = await recordAt(blobs, report, info.key, (bytes) => readSaveRecord(keys, info.key, bytes));
      if (!record) continue;
      if (info.key !== saveRecordKey(keys, user.id, record.session.id, record.save.id) || record.session.userId !== user.id || record.save.sessionId !== record.session.id) {
        report.problems.push(`${info.key} names another user's or session's save; skipped.`);
        continue;
      }
      try {
        const known = sessions.get(record.session.id);
        if (!known) {
          await store.insertSession(endedSession(record.session, record.save.createdAt));
          report.sessions++;
          sessions.set(record.session.id, { session: record.session, latest: record.save.createdAt });
        } else if (record.save.createdAt > known.latest) {
          known.latest = record.save.createdAt;
        }
        await store.insertSave(record.save);
        report.saves++;
      } catch (err) {
        report.problems.push(`Save ${record.save.id} of ${record.session.label} (${info.key}) could not be recovered: ${(err as Error).message}`);
      }
    }
    for (const { session, latest } of sessions.values()) await store.updateSession(session.id, { endedAt: latest });
  }
  return report;
}

/** A recovered session's row: ended (its machine is gone, or will be found by no one), its agent token unusable. */
function endedSession(s: SaveRecord["session"], endedAt: string): SessionRow {
  return {
    ...s,
    status: "stopped",
    cols: 80,
    rows: 24,
    agentTokenHash: `recovered:${crypto.randomUUID()}`,
    machine: null,
    endedAt,
    exitCode: null,
    endReason: "recovered from storage",
    lastScreen: null,
    restoreKey: null,
    finalSave: null,
    idleTimeoutMs: 0,
    expiresAt: null,
    ending: null,
    attention: null,
    relayReplica: null,
    lastActivityAt: null,
  };
}
