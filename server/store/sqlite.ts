/** The embedded database: one SQLite file in the data dir, through `bun:sqlite`. */
import { Database } from "bun:sqlite";
import type { SaveRow, SessionPatch, SessionRow, Store, UploadRow, User } from "./types.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  label TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL REFERENCES users(id),
  status TEXT NOT NULL,
  region TEXT NOT NULL,
  provider TEXT NOT NULL,
  command TEXT NOT NULL,
  cols INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  agent_token_hash TEXT NOT NULL UNIQUE,
  machine TEXT,
  created_at TEXT NOT NULL,
  ended_at TEXT,
  exit_code INTEGER,
  end_reason TEXT,
  last_screen TEXT,
  restore_key TEXT,
  final_save TEXT,
  idle_timeout_ms INTEGER NOT NULL,
  expires_at TEXT
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id, created_at);
CREATE TABLE IF NOT EXISTS saves (
  id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL REFERENCES sessions(id),
  key TEXT NOT NULL,
  created_at TEXT NOT NULL,
  size INTEGER NOT NULL,
  files INTEGER NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS saves_session ON saves(session_id, created_at);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  key TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
`;

interface SessionRecord {
  id: string;
  label: string;
  user_id: string;
  status: string;
  region: string;
  provider: string;
  command: string;
  cols: number;
  rows: number;
  agent_token_hash: string;
  machine: string | null;
  created_at: string;
  ended_at: string | null;
  exit_code: number | null;
  end_reason: string | null;
  last_screen: string | null;
  restore_key: string | null;
  final_save: string | null;
  idle_timeout_ms: number;
  expires_at: string | null;
}

interface SaveRecord {
  id: string;
  session_id: string;
  key: string;
  created_at: string;
  size: number;
  files: number;
  reason: string;
}

interface UploadRecord {
  id: string;
  user_id: string;
  key: string;
  size: number;
  created_at: string;
}

const saveFrom = (r: SaveRecord): SaveRow => ({
  id: r.id,
  sessionId: r.session_id,
  key: r.key,
  createdAt: r.created_at,
  size: r.size,
  files: r.files,
  reason: r.reason,
});

const uploadFrom = (r: UploadRecord): UploadRow => ({
  id: r.id,
  userId: r.user_id,
  key: r.key,
  size: r.size,
  createdAt: r.created_at,
});

const fromRecord = (r: SessionRecord): SessionRow => ({
  id: r.id,
  label: r.label,
  userId: r.user_id,
  status: r.status as SessionRow["status"],
  region: r.region,
  provider: r.provider,
  command: JSON.parse(r.command) as string[],
  cols: r.cols,
  rows: r.rows,
  agentTokenHash: r.agent_token_hash,
  machine: r.machine ? (JSON.parse(r.machine) as Record<string, unknown>) : null,
  createdAt: r.created_at,
  endedAt: r.ended_at,
  exitCode: r.exit_code,
  endReason: r.end_reason,
  lastScreen: r.last_screen,
  restoreKey: r.restore_key,
  finalSave: r.final_save,
  idleTimeoutMs: r.idle_timeout_ms,
  expiresAt: r.expires_at,
});

const COLUMNS: Record<keyof SessionPatch, string> = {
  status: "status",
  machine: "machine",
  endedAt: "ended_at",
  exitCode: "exit_code",
  endReason: "end_reason",
  lastScreen: "last_screen",
  cols: "cols",
  rows: "rows",
  restoreKey: "restore_key",
  finalSave: "final_save",
};

export function openSqliteStore(file: string): Store {
  const db = new Database(file, { create: true, strict: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA busy_timeout = 5000");
  db.run("PRAGMA foreign_keys = ON");
  db.run(SCHEMA);

  const userFrom = (r: { id: string; name: string; created_at: string } | null): User | null =>
    r ? { id: r.id, name: r.name, createdAt: r.created_at } : null;
  const sessionBy = (where: string, ...params: string[]): SessionRow | null => {
    const r = db.query(`SELECT * FROM sessions WHERE ${where}`).get(...params) as SessionRecord | null;
    return r ? fromRecord(r) : null;
  };

  return {
    async countUsers() {
      return (db.query("SELECT count(*) AS n FROM users").get() as { n: number }).n;
    },
    async createUser(name) {
      const user = { id: crypto.randomUUID(), name, createdAt: new Date().toISOString() };
      db.query("INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)").run(user.id, name, user.createdAt);
      return user;
    },
    async userByName(name) {
      return userFrom(db.query("SELECT * FROM users WHERE name = ?").get(name) as never);
    },
    async addToken(userId, tokenHash) {
      db.query("INSERT INTO tokens (hash, user_id, created_at) VALUES (?, ?, ?)").run(
        tokenHash,
        userId,
        new Date().toISOString(),
      );
    },
    async userByTokenHash(tokenHash) {
      return userFrom(
        db.query("SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?").get(tokenHash) as never,
      );
    },
    async insertSession(s) {
      db.query(
        `INSERT INTO sessions (id, label, user_id, status, region, provider, command, cols, rows,
           agent_token_hash, machine, created_at, ended_at, exit_code, end_reason, last_screen, restore_key, final_save,
           idle_timeout_ms, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        s.id, s.label, s.userId, s.status, s.region, s.provider, JSON.stringify(s.command), s.cols, s.rows,
        s.agentTokenHash, s.machine ? JSON.stringify(s.machine) : null, s.createdAt, s.endedAt, s.exitCode,
        s.endReason, s.lastScreen, s.restoreKey, s.finalSave, s.idleTimeoutMs, s.expiresAt,
      );
    },
    async labelTaken(label) {
      return db.query("SELECT 1 FROM sessions WHERE label = ?").get(label) !== null;
    },
    async sessionFor(userId, label) {
      return sessionBy("user_id = ? AND label = ?", userId, label);
    },
    async sessionByAgentTokenHash(tokenHash) {
      return sessionBy("agent_token_hash = ?", tokenHash);
    },
    async sessionById(id) {
      return sessionBy("id = ?", id);
    },
    async listSessions(userId) {
      const rows = db
        .query("SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC, rowid DESC")
        .all(userId) as SessionRecord[];
      return rows.map(fromRecord);
    },
    async liveSessions() {
      const rows = db
        .query("SELECT * FROM sessions WHERE status IN ('starting', 'running', 'stopping')")
        .all() as SessionRecord[];
      return rows.map(fromRecord);
    },
    async updateSession(id, patch) {
      const keys = Object.keys(patch) as (keyof SessionPatch)[];
      if (keys.length > 0) {
        const sets = keys.map((k) => `${COLUMNS[k]} = ?`).join(", ");
        const values = keys.map((k) => {
          const v = patch[k];
          return k === "machine" ? (v ? JSON.stringify(v) : null) : (v ?? null);
        });
        db.query(`UPDATE sessions SET ${sets} WHERE id = ?`).run(...(values as (string | number | null)[]), id);
      }
      return sessionBy("id = ?", id);
    },
    async insertSave(r) {
      db.query(
        "INSERT INTO saves (id, session_id, key, created_at, size, files, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ).run(r.id, r.sessionId, r.key, r.createdAt, r.size, r.files, r.reason);
    },
    async listSaves(sessionId) {
      const rows = db
        .query("SELECT * FROM saves WHERE session_id = ? ORDER BY created_at DESC, rowid DESC")
        .all(sessionId) as SaveRecord[];
      return rows.map(saveFrom);
    },
    async deleteSave(id) {
      db.query("DELETE FROM saves WHERE id = ?").run(id);
    },
    async insertUpload(r) {
      db.query("INSERT INTO uploads (id, user_id, key, size, created_at) VALUES (?, ?, ?, ?, ?)").run(
        r.id, r.userId, r.key, r.size, r.createdAt,
      );
    },
    async takeUpload(userId, id) {
      const r = db.query("DELETE FROM uploads WHERE id = ? AND user_id = ? RETURNING *").get(id, userId) as UploadRecord | null;
      return r ? uploadFrom(r) : null;
    },
    async staleUploads(beforeIso) {
      return (db.query("SELECT * FROM uploads WHERE created_at < ?").all(beforeIso) as UploadRecord[]).map(uploadFrom);
    },
    async deleteUpload(id) {
      db.query("DELETE FROM uploads WHERE id = ?").run(id);
    },
    close() {
      db.close();
    },
  };
}
