/**
 * The SQLite store's schema changes: a database written by the first release opens, keeps its
 * rows, and gains the new columns; the pending ending round-trips; a newer schema is refused.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIRST_SCHEMA, SQLITE_SCHEMA_VERSION, openSqliteStore } from "../../server/store/sqlite.ts";
import type { SessionRow } from "../../server/store/types.ts";
import { sessionRow } from "../helpers/rows.ts";
import { removeAfterRun } from "../helpers/fs.ts";


const dbFile = (): string => join(removeAfterRun(mkdtempSync(join(tmpdir(), "catty-store-"))), "catty.db");

function firstReleaseDb(file: string): void {
  const db = new Database(file, { create: true });
  db.run(FIRST_SCHEMA);
  db.run("INSERT INTO users (id, name, created_at) VALUES ('u1', 'owner', '2026-01-01T00:00:00.000Z')");
  const insert = db.query(
    `INSERT INTO sessions (id, label, user_id, status, region, provider, command, cols, rows, agent_token_hash, machine,
       created_at, idle_timeout_ms) VALUES (?, ?, 'u1', ?, 'local', 'local', '[]', 80, 24, ?, ?, '2026-01-01T00:00:00.000Z', 7200000)`,
  );
  insert.run("s1", "brave-tiger-1234", "stopping", "h1", JSON.stringify({ pid: 4242, dir: "/old" }));
  insert.run("s2", "calm-otter-5678", "running", "h2", JSON.stringify({ provider: "local", pid: 4243, dir: "/x" }));
  insert.run("s3", "bold-panda-0001", "stopped", "h3", null);
  db.close();
}

const row = (id: string): SessionRow => sessionRow({ id });

describe("sqlite store migrations", () => {
  test("a first-release database opens with its rows, and a stopping session keeps its (user) ending", async () => {
    const file = dbFile();
    firstReleaseDb(file);
    const store = openSqliteStore(file);
    const stopping = await store.sessionById("s1");
    expect(stopping).toMatchObject({ label: "brave-tiger-1234", status: "stopping", ending: { status: "stopped", reason: "stopped by user" } });
    // Local handles from before handles were typed are upgraded.
    expect(stopping?.machine).toEqual({ provider: "local", pid: 4242, dir: "/old" });
    expect(await store.sessionById("s2")).toMatchObject({ status: "running", ending: null, machine: { provider: "local", pid: 4243 } });
    expect((await store.liveSessions()).map((r) => r.id).sort()).toEqual(["s1", "s2"]);
    store.close();
    const db = new Database(file);
    expect((db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(SQLITE_SCHEMA_VERSION);
    // The blob index has no index by pack (no query looks blobs up by pack).
    expect(db.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blobs'").all()).not.toContainEqual({ name: "blobs_pack" });
    db.close();
    // Opening again changes nothing.
    const again = openSqliteStore(file);
    expect((await again.sessionById("s1"))?.ending).toEqual({ status: "stopped", reason: "stopped by user" });
    again.close();
  });

  test("a pending ending is stored, read back and cleared", async () => {
    const store = openSqliteStore(dbFile());
    await store.createUser("owner");
    const user = await store.userByName("owner");
    await store.insertSession({ ...row("a"), userId: user!.id, ending: { status: "timed_out", reason: "idle for 2h" } });
    expect((await store.sessionById("a"))?.ending).toEqual({ status: "timed_out", reason: "idle for 2h" });
    await store.updateSession("a", { ending: { status: "stopped", reason: "stopped by user" } });
    expect((await store.sessionById("a"))?.ending).toEqual({ status: "stopped", reason: "stopped by user" });
    await store.updateSession("a", { status: "timed_out", ending: null });
    expect(await store.sessionById("a")).toMatchObject({ status: "timed_out", ending: null });
    store.close();
  });

  test("a database from a newer server is refused with a clear error", () => {
    const file = dbFile();
    const db = new Database(file, { create: true });
    db.run("PRAGMA user_version = 99");
    db.close();
    expect(() => openSqliteStore(file)).toThrow(/written by a newer catty-server \(schema 99\)/);
  });
});
