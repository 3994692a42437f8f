/**
 * The embedded database: one SQLite file in the data dir, through `bun:sqlite`. The schema below
 * is the first release's; later changes are `MIGRATIONS`, applied in order on open and counted in
 * `PRAGMA user_version`, so a database from any earlier version opens and keeps its rows.
 */
import { Database } from "bun:sqlite";
import type { Log } from "../../src/lib/log.ts";
import { grantFrom, patchColumns, rowReaders, type Row } from "./rows.ts";
import type { BlobLocation, HoldResult, SessionRow, Store, UsageRecord } from "./types.ts";

/** The first release's schema (user_version 0); `MIGRATIONS` take it to the current one. */
export const FIRST_SCHEMA = `
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
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), key TEXT NOT NULL, size INTEGER NOT NULL, created_at TEXT NOT NULL
);
`;

/** Schema changes since the first release, in order. Each must be safe on a database of any earlier version. */
const MIGRATIONS: ReadonlyArray<(db: Database) => void> = [
  // 1: the ending a session is being stopped with survives a server restart.
  (db) => {
    addColumn(db, "sessions", "ending_status", "TEXT");
    addColumn(db, "sessions", "ending_reason", "TEXT");
    db.run("CREATE INDEX IF NOT EXISTS saves_key ON saves(key)");
    // Local machine handles from before handles were typed: {pid, dir}.
    db.run(
      `UPDATE sessions SET machine = json_set(machine, '$.provider', 'local')
       WHERE provider = 'local' AND json_valid(machine) AND json_extract(machine, '$.provider') IS NULL`,
    );
    // Before this, only a user's stop left a session "stopping" across a restart.
    db.run("UPDATE sessions SET ending_status = 'stopped', ending_reason = 'stopped by user' WHERE status = 'stopping' AND ending_status IS NULL");
  },
  // 2: Claude API access through the server: each session's proxy token, metered usage, quotas.
  (db) => {
    addColumn(db, "sessions", "proxy_token_hash", "TEXT");
    db.run("CREATE INDEX IF NOT EXISTS sessions_proxy_token ON sessions(proxy_token_hash)");
    addColumn(db, "users", "token_quota", "INTEGER");
    db.run(`CREATE TABLE IF NOT EXISTS usage (
      session_id TEXT NOT NULL REFERENCES sessions(id),
      user_id TEXT NOT NULL REFERENCES users(id),
      month TEXT NOT NULL,
      requests INTEGER NOT NULL DEFAULT 0,
      input_tokens INTEGER NOT NULL DEFAULT 0,
      output_tokens INTEGER NOT NULL DEFAULT 0,
      cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
      cache_read_tokens INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (session_id, month)
    )`);
    db.run("CREATE INDEX IF NOT EXISTS usage_user_month ON usage(user_id, month)");
  },
  // 3: whether a running session's program waits for its user.
  (db) => {
    addColumn(db, "sessions", "attention_state", "TEXT");
    addColumn(db, "sessions", "attention_since", "TEXT");
  },
  // 4: the web dashboard: browser sessions, the CLI's device-code logins, WebSocket tickets.
  (db) => {
    db.run(`CREATE TABLE IF NOT EXISTS browser_sessions (
      id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
      created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT)`);
    db.run(`CREATE TABLE IF NOT EXISTS device_codes (
      device_hash TEXT PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
      status TEXT NOT NULL, user_id TEXT REFERENCES users(id), polled_at TEXT)`);
    db.run(`CREATE TABLE IF NOT EXISTS attach_tickets (
      hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), session_id TEXT NOT NULL REFERENCES sessions(id),
      viewer INTEGER NOT NULL, expires_at TEXT NOT NULL)`);
  },
  // 5: content-addressed, encrypted saves: each user's wrapped key, the blob index, bytes a save added.
  (db) => {
    db.run(`CREATE TABLE IF NOT EXISTS user_keys (
      user_id TEXT PRIMARY KEY REFERENCES users(id), wrapped TEXT NOT NULL, created_at TEXT NOT NULL)`);
    db.run(`CREATE TABLE IF NOT EXISTS blobs (
      user_id TEXT NOT NULL, id TEXT NOT NULL, pack TEXT NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
      created_at TEXT NOT NULL, PRIMARY KEY (user_id, id)) WITHOUT ROWID`);
    db.run("CREATE INDEX IF NOT EXISTS blobs_pack ON blobs(pack)");
    addColumn(db, "saves", "added", "INTEGER");
  },
  // 6: several replicas on one database: who relays each session, replicas and leases, transfers in
  // flight.
  (db) => {
    addColumn(db, "sessions", "relay_replica", "TEXT");
    db.run("CREATE TABLE IF NOT EXISTS replicas (id TEXT PRIMARY KEY, url TEXT NOT NULL, started_at TEXT NOT NULL, seen_at TEXT NOT NULL)");
    db.run("CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until TEXT NOT NULL)");
    db.run(`CREATE TABLE IF NOT EXISTS transfers (
      id TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT, reason TEXT NOT NULL,
      started_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, added INTEGER NOT NULL, cap INTEGER NOT NULL)`);
    db.run("CREATE INDEX IF NOT EXISTS transfers_session ON transfers(session_id)");
    db.run("CREATE INDEX IF NOT EXISTS transfers_user ON transfers(user_id)");
  },
  // 7: when input or output last went through a session (any replica shows it, and its idle time
  // survives a restart or a move).
  (db) => addColumn(db, "sessions", "last_activity_at", "TEXT"),
  // 8: small blobs sealed together in groups; how many times a user's blobs were deleted.
  (db) => {
    addColumn(db, "blobs", "grouped", "INTEGER NOT NULL DEFAULT 0");
    addColumn(db, "user_keys", "deletions", "INTEGER NOT NULL DEFAULT 0");
  },
  // 9: no query looks blobs up by pack; the index cost about a tenth of every blob's insert.
  (db) => db.run("DROP INDEX IF EXISTS blobs_pack"),
  // 10: the quota held by Claude API requests in flight.
  (db) => {
    db.run(`CREATE TABLE IF NOT EXISTS token_holds (
      id TEXT PRIMARY KEY, user_id TEXT NOT NULL, month TEXT NOT NULL, tokens INTEGER NOT NULL, created_at TEXT NOT NULL)`);
    db.run("CREATE INDEX IF NOT EXISTS token_holds_user ON token_holds(user_id, month)");
  },
  // 11: who asked for a device code, shown to the person approving it.
  (db) => {
    addColumn(db, "device_codes", "requester_address", "TEXT");
    addColumn(db, "device_codes", "requester_agent", "TEXT");
  },
  // 12: tokens that expire; the token a browser signed in with (revoking it signs the browser out).
  (db) => {
    addColumn(db, "tokens", "expires_at", "TEXT");
    addColumn(db, "browser_sessions", "token_hash", "TEXT");
    db.run("CREATE INDEX IF NOT EXISTS browser_sessions_token ON browser_sessions(token_hash)");
  },
  // 13: preview links and share links: capabilities for one port of one session.
  (db) => {
    db.run(`CREATE TABLE IF NOT EXISTS port_grants (
      hash TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id),
      session_id TEXT NOT NULL REFERENCES sessions(id), port INTEGER NOT NULL,
      created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT)`);
    db.run("CREATE INDEX IF NOT EXISTS port_grants_session ON port_grants(session_id)");
  },
  // 14: state the replicas share: the ACME account and the certificates it obtained.
  (db) => {
    db.run("CREATE TABLE IF NOT EXISTS server_state (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)");
  },
];

/** The schema this server writes (`PRAGMA user_version`): one step per migration. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

function addColumn(db: Database, table: string, column: string, type: string): void {
  const columns = db.query(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>;
  if (!columns.some((c) => c.name === column)) db.run(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}

function migrate(db: Database, file: string): void {
  const version = (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  if (version > MIGRATIONS.length) {
    throw new Error(`The database ${file} was written by a newer catty-server (schema ${version}); run that version or newer.`);
  }
  db.transaction(() => {
    for (let v = version; v < MIGRATIONS.length; v++) MIGRATIONS[v]?.(db);
    db.run(`PRAGMA user_version = ${MIGRATIONS.length}`);
  })();
}

export function openSqliteStore(file: string, opts: { log?: Log } = {}): Store {
  const db = new Database(file, { create: true, strict: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA busy_timeout = 5000");
  // Reads through a memory map instead of a system call per page: looking up every blob of a
  // 20,000-file save takes half the time.
  db.run("PRAGMA mmap_size = 268435456");
  db.run("PRAGMA foreign_keys = ON");
  db.run(FIRST_SCHEMA);
  migrate(db, file);
  const { sessionFrom, saveFrom, uploadFrom, deviceFrom, userFrom, replicaFrom, transferFrom, tokenFrom } = rowReaders(opts.log);
  const addUsage = ({ userId, sessionId, month, tokens: t }: UsageRecord): void => {
    db.query(
      `INSERT INTO usage (session_id, user_id, month, requests, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens)
       VALUES (?, ?, ?, 1, ?, ?, ?, ?)
       ON CONFLICT (session_id, month) DO UPDATE SET requests = requests + 1,
         input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens,
         cache_creation_tokens = cache_creation_tokens + excluded.cache_creation_tokens,
         cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens`,
    ).run(sessionId, userId, month, t.input, t.output, t.cacheCreation, t.cacheRead);
  };
  const sessionBy = (where: string, ...params: string[]): SessionRow | null => {
    const r = db.query(`SELECT * FROM sessions WHERE ${where}`).get(...params) as Row | null;
    return r ? sessionFrom(r) : null;
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
    async insertUser(user) {
      db.query("INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)").run(user.id, user.name, user.createdAt);
    },
    async userByName(name) {
      return userFrom(db.query("SELECT * FROM users WHERE name = ?").get(name) as Row | null);
    },
    async userById(id) {
      return userFrom(db.query("SELECT * FROM users WHERE id = ?").get(id) as Row | null);
    },
    async addToken(userId, tokenHash, expiresAt = null) {
      db.query("INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)").run(tokenHash, userId, new Date().toISOString(), expiresAt);
    },
    async userByTokenHash(tokenHash) {
      return userFrom(
        db
          .query("SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ? AND (t.expires_at IS NULL OR t.expires_at > ?)")
          .get(tokenHash, new Date().toISOString()) as Row | null,
      );
    },
    async listTokens(userId) {
      const rows = db
        .query(`SELECT t.*, u.name FROM tokens t JOIN users u ON u.id = t.user_id ${userId ? "WHERE t.user_id = ?" : ""} ORDER BY t.created_at, t.hash`)
        .all(...(userId ? [userId] : [])) as Row[];
      return rows.map(tokenFrom);
    },
    async revokeToken(tokenHash) {
      return db.transaction(() => {
        db.query("UPDATE browser_sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL").run(new Date().toISOString(), tokenHash);
        return db.query("DELETE FROM tokens WHERE hash = ?").run(tokenHash).changes > 0;
      }).immediate();
    },
    async insertSession(s) {
      db.query(
        `INSERT INTO sessions (id, label, user_id, status, region, provider, command, cols, rows,
           agent_token_hash, machine, created_at, ended_at, exit_code, end_reason, last_screen, restore_key, final_save,
           idle_timeout_ms, expires_at, ending_status, ending_reason, attention_state, attention_since)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        s.id, s.label, s.userId, s.status, s.region, s.provider, JSON.stringify(s.command), s.cols, s.rows,
        s.agentTokenHash, s.machine ? JSON.stringify(s.machine) : null, s.createdAt, s.endedAt, s.exitCode,
        s.endReason, s.lastScreen, s.restoreKey, s.finalSave, s.idleTimeoutMs, s.expiresAt,
        s.ending?.status ?? null, s.ending?.reason ?? null, s.attention?.state ?? null, s.attention?.since ?? null,
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
        .all(userId) as Row[];
      return rows.map(sessionFrom);
    },
    async liveSessions() {
      const rows = db
        .query("SELECT * FROM sessions WHERE status IN ('starting', 'running', 'stopping')")
        .all() as Row[];
      return rows.map(sessionFrom);
    },
    async updateSession(id, patch) {
      const columns = patchColumns(patch);
      if (columns.length > 0) {
        const sets = columns.map(([c]) => `${c} = ?`).join(", ");
        db.query(`UPDATE sessions SET ${sets} WHERE id = ?`).run(...columns.map(([, v]) => v), id);
      }
      return sessionBy("id = ?", id);
    },
    async setProxyToken(sessionId, tokenHash) {
      db.query("UPDATE sessions SET proxy_token_hash = ? WHERE id = ?").run(tokenHash, sessionId);
    },
    async sessionByProxyTokenHash(tokenHash) {
      return sessionBy("proxy_token_hash = ?", tokenHash);
    },
    async addUsage(userId, sessionId, month, tokens) {
      addUsage({ userId, sessionId, month, tokens });
    },
    async usageOf(userId, month) {
      const rows = db
        .query(
          `SELECT u.*, s.label FROM usage u JOIN sessions s ON s.id = u.session_id
           WHERE u.user_id = ? AND u.month = ? ORDER BY s.created_at DESC, s.rowid DESC`,
        )
        .all(userId, month) as Array<{
        session_id: string; label: string; month: string; requests: number;
        input_tokens: number; output_tokens: number; cache_creation_tokens: number; cache_read_tokens: number;
      }>;
      return rows.map((r) => ({
        sessionId: r.session_id, label: r.label, month: r.month, requests: r.requests,
        input: r.input_tokens, output: r.output_tokens, cacheCreation: r.cache_creation_tokens, cacheRead: r.cache_read_tokens,
      }));
    },
    async setTokenQuota(userId, tokens) {
      db.query("UPDATE users SET token_quota = ? WHERE id = ?").run(tokens, userId);
    },
    async tokenQuota(userId) {
      const r = db.query("SELECT token_quota FROM users WHERE id = ?").get(userId) as { token_quota: number | null } | null;
      return r?.token_quota ?? null;
    },
    async holdTokens(h, staleBeforeIso) {
      // One connection, and nothing awaited inside: the transaction is the whole check-and-hold.
      return db.transaction((): HoldResult => {
        const quota = (db.query("SELECT token_quota FROM users WHERE id = ?").get(h.userId) as { token_quota: number | null } | null)?.token_quota ?? null;
        if (quota === null) return { ok: true };
        db.query("DELETE FROM token_holds WHERE user_id = ? AND created_at < ?").run(h.userId, staleBeforeIso);
        const used = (db
          .query("SELECT coalesce(sum(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens), 0) AS n FROM usage WHERE user_id = ? AND month = ?")
          .get(h.userId, h.month) as { n: number }).n;
        const held = (db.query("SELECT coalesce(sum(tokens), 0) AS n FROM token_holds WHERE user_id = ? AND month = ?").get(h.userId, h.month) as { n: number }).n;
        if (used + held >= quota) return { ok: false, used, held, quota };
        if (h.tokens > 0) db.query("INSERT INTO token_holds (id, user_id, month, tokens, created_at) VALUES (?, ?, ?, ?, ?)").run(h.id, h.userId, h.month, h.tokens, h.createdAt);
        return { ok: true };
      }).immediate();
    },
    async settleHold(holdId, usage) {
      db.transaction(() => {
        db.query("DELETE FROM token_holds WHERE id = ?").run(holdId);
        if (usage) addUsage(usage);
      }).immediate();
    },
    async insertBrowserSession(s) {
      db.query("INSERT INTO browser_sessions (id_hash, user_id, csrf, created_at, expires_at, token_hash) VALUES (?, ?, ?, ?, ?, ?)").run(
        s.idHash, s.userId, s.csrf, s.createdAt, s.expiresAt, s.tokenHash ?? null,
      );
    },
    async browserSession(idHash, nowIso) {
      const r = db
        .query("SELECT * FROM browser_sessions WHERE id_hash = ? AND revoked_at IS NULL AND expires_at > ?")
        .get(idHash, nowIso) as { id_hash: string; user_id: string; csrf: string; created_at: string; expires_at: string } | null;
      return r ? { idHash: r.id_hash, userId: r.user_id, csrf: r.csrf, createdAt: r.created_at, expiresAt: r.expires_at } : null;
    },
    async revokeBrowserSession(idHash) {
      db.query("UPDATE browser_sessions SET revoked_at = ? WHERE id_hash = ?").run(new Date().toISOString(), idHash);
    },
    async insertDeviceCode(d) {
      db.query(
        "INSERT INTO device_codes (device_hash, user_code, created_at, expires_at, status, user_id, polled_at, requester_address, requester_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(d.deviceHash, d.userCode, d.createdAt, d.expiresAt, d.status, d.userId, d.polledAt, d.requesterAddress, d.requesterAgent);
    },
    async deviceCodeByHash(deviceHash) {
      return deviceFrom(db.query("SELECT * FROM device_codes WHERE device_hash = ?").get(deviceHash) as Row | null);
    },
    async deviceCodeByUserCode(userCode) {
      return deviceFrom(db.query("SELECT * FROM device_codes WHERE user_code = ?").get(userCode) as Row | null);
    },
    async updateDeviceCode(deviceHash, patch) {
      const sets: string[] = [];
      const values: Array<string | null> = [];
      if (patch.status !== undefined) (sets.push("status = ?"), values.push(patch.status));
      if (patch.userId !== undefined) (sets.push("user_id = ?"), values.push(patch.userId));
      if (patch.polledAt !== undefined) (sets.push("polled_at = ?"), values.push(patch.polledAt));
      if (sets.length > 0) db.query(`UPDATE device_codes SET ${sets.join(", ")} WHERE device_hash = ?`).run(...values, deviceHash);
    },
    async redeemDeviceCode(deviceHash, nowIso) {
      const r = db
        .query("UPDATE device_codes SET status = 'used' WHERE device_hash = ? AND status = 'approved' AND expires_at > ? RETURNING user_id")
        .get(deviceHash, nowIso) as { user_id: string | null } | null;
      return r?.user_id ?? null;
    },
    async insertTicket(t) {
      db.query("INSERT INTO attach_tickets (hash, user_id, session_id, viewer, expires_at) VALUES (?, ?, ?, ?, ?)").run(
        t.hash, t.userId, t.sessionId, t.viewer ? 1 : 0, t.expiresAt,
      );
    },
    async takeTicket(hash, nowIso) {
      return db.transaction(() => {
        const r = db.query("SELECT * FROM attach_tickets WHERE hash = ?").get(hash) as
          | { hash: string; user_id: string; session_id: string; viewer: number; expires_at: string }
          | null;
        if (!r) return null;
        db.query("DELETE FROM attach_tickets WHERE hash = ?").run(hash);
        db.query("DELETE FROM attach_tickets WHERE expires_at <= ?").run(nowIso);
        if (r.expires_at <= nowIso) return null;
        return { hash: r.hash, userId: r.user_id, sessionId: r.session_id, viewer: r.viewer === 1, expiresAt: r.expires_at };
      })();
    },
    async insertPortGrant(g) {
      db.query("INSERT INTO port_grants (hash, kind, user_id, session_id, port, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)").run(
        g.hash, g.kind, g.userId, g.sessionId, g.port, g.createdAt, g.expiresAt, g.revokedAt,
      );
    },
    async takePortGrant(hash, nowIso) {
      return db.transaction(() => {
        const r = db.query("SELECT * FROM port_grants WHERE hash = ?").get(hash) as Record<string, string | number | null> | null;
        if (!r) return null;
        if (r.kind === "ticket") db.query("DELETE FROM port_grants WHERE hash = ?").run(hash);
        db.query("DELETE FROM port_grants WHERE expires_at <= ?").run(nowIso);
        const g = grantFrom(r);
        return g.expiresAt <= nowIso || g.revokedAt !== null ? null : g;
      })();
    },
    async listShares(sessionId, nowIso) {
      const rows = db
        .query("SELECT * FROM port_grants WHERE session_id = ? AND kind = 'share' AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at DESC")
        .all(sessionId, nowIso) as Array<Record<string, string | number | null>>;
      return rows.map(grantFrom);
    },
    async revokeShares(sessionId, port, nowIso) {
      const r = db
        .query("UPDATE port_grants SET revoked_at = ? WHERE session_id = ? AND (? IS NULL OR port = ?) AND revoked_at IS NULL AND kind = 'share' AND expires_at > ?")
        .run(nowIso, sessionId, port, port, nowIso);
      return r.changes;
    },
    async insertSave(r) {
      db.query(
        "INSERT INTO saves (id, session_id, key, created_at, size, files, reason, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(r.id, r.sessionId, r.key, r.createdAt, r.size, r.files, r.reason, r.added);
    },
    async listSaves(sessionId) {
      const rows = db
        .query("SELECT * FROM saves WHERE session_id = ? ORDER BY created_at DESC, rowid DESC")
        .all(sessionId) as Row[];
      return rows.map(saveFrom);
    },
    async saveKeyExists(key) {
      return db.query("SELECT 1 FROM saves WHERE key = ?").get(key) !== null;
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
      const r = db.query("DELETE FROM uploads WHERE id = ? AND user_id = ? RETURNING *").get(id, userId) as Row | null;
      return r ? uploadFrom(r) : null;
    },
    async staleUploads(beforeIso) {
      return (db.query("SELECT * FROM uploads WHERE created_at < ?").all(beforeIso) as Row[]).map(uploadFrom);
    },
    async deleteUpload(id) {
      db.query("DELETE FROM uploads WHERE id = ?").run(id);
    },
    async uploadKeyExists(key) {
      return db.query("SELECT 1 FROM uploads WHERE key = ?").get(key) !== null;
    },
    async savesOfUser(userId) {
      const rows = db
        .query("SELECT saves.* FROM saves JOIN sessions ON sessions.id = saves.session_id WHERE sessions.user_id = ?")
        .all(userId) as Row[];
      return rows.map(saveFrom);
    },
    async uploadsOfUser(userId) {
      return (db.query("SELECT * FROM uploads WHERE user_id = ?").all(userId) as Row[]).map(uploadFrom);
    },
    async userKey(userId) {
      return (db.query("SELECT wrapped FROM user_keys WHERE user_id = ?").get(userId) as { wrapped: string } | null)?.wrapped ?? null;
    },
    async insertUserKey(userId, wrapped) {
      db.query("INSERT OR IGNORE INTO user_keys (user_id, wrapped, created_at) VALUES (?, ?, ?)").run(userId, wrapped, new Date().toISOString());
      return (db.query("SELECT wrapped FROM user_keys WHERE user_id = ?").get(userId) as { wrapped: string }).wrapped;
    },
    async blobsPresent(userId, ids) {
      return new Set((await this.blobLocations(userId, ids)).keys());
    },
    async insertBlobs(userId, rows) {
      const q = db.query("INSERT OR IGNORE INTO blobs (user_id, id, pack, offset, length, grouped, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
      const now = new Date().toISOString();
      const inserted = new Set<string>();
      db.transaction(() => {
        for (const r of rows) if (q.run(userId, r.id, r.pack, r.offset, r.length, r.grouped ? 1 : 0, now).changes > 0) inserted.add(r.id);
      })();
      return inserted;
    },
    async blobLocations(userId, ids) {
      const out = new Map<string, BlobLocation>();
      // One lookup per id through one prepared statement, read as arrays: a restore looks up each
      // directory's blobs as it goes, and an `IN (…)` of each length would be a statement of its own.
      const q = db.query("SELECT pack, offset, length, grouped FROM blobs WHERE user_id = ? AND id = ?");
      db.transaction(() => {
        for (const id of ids) {
          const row = q.values(userId, id)[0] as [string, number, number, number] | undefined;
          if (!row) continue;
          const [pack, offset, length, grouped] = row;
          out.set(id, grouped ? { pack, offset, length, grouped: true } : { pack, offset, length });
        }
      })();
      return out;
    },
    async blobsOfUser(userId) {
      return db.query("SELECT id, pack FROM blobs WHERE user_id = ?").all(userId) as Array<{ id: string; pack: string }>;
    },
    async deleteBlobs(userId, ids) {
      if (ids.length === 0) return;
      const q = db.query("DELETE FROM blobs WHERE user_id = ? AND id = ?");
      db.transaction(() => {
        for (const id of ids) q.run(userId, id);
        db.query("UPDATE user_keys SET deletions = deletions + 1 WHERE user_id = ?").run(userId);
      })();
    },
    async blobDeletions(userId) {
      return (db.query("SELECT deletions FROM user_keys WHERE user_id = ?").get(userId) as { deletions: number } | null)?.deletions ?? 0;
    },
    async usersWithBlobs() {
      return (db.query("SELECT DISTINCT user_id FROM blobs").all() as Array<{ user_id: string }>).map((r) => r.user_id);
    },
    async endSession(id, patch) {
      const columns = patchColumns(patch);
      const sets = columns.map(([c]) => `${c} = ?`).join(", ");
      const r = db
        .query(`UPDATE sessions SET ${sets} WHERE id = ? AND status IN ('starting', 'running', 'stopping') RETURNING *`)
        .get(...columns.map(([, v]) => v), id) as Row | null;
      return r ? sessionFrom(r) : null;
    },
    async beatReplica(r, nowIso) {
      db.query("INSERT INTO replicas (id, url, started_at, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at").run(
        r.id, r.url, nowIso, nowIso,
      );
    },
    async replicas(sinceIso) {
      return (db.query("SELECT * FROM replicas WHERE seen_at >= ? ORDER BY started_at, id").all(sinceIso) as Row[]).map(replicaFrom);
    },
    async removeReplica(id) {
      db.query("DELETE FROM replicas WHERE id = ?").run(id);
    },
    async takeLease(name, holder, untilIso, nowIso) {
      const r = db
        .query(
          `INSERT INTO leases (name, holder, until) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
           WHERE leases.holder = excluded.holder OR leases.until <= ? RETURNING holder`,
        )
        .get(name, holder, untilIso, nowIso) as { holder: string } | null;
      return r?.holder === holder;
    },
    async releaseLease(name, holder) {
      db.query("DELETE FROM leases WHERE name = ? AND holder = ?").run(name, holder);
    },
    async leaseHeld(name, nowIso) {
      return db.query("SELECT 1 FROM leases WHERE name = ? AND until > ?").get(name, nowIso) !== null;
    },
    async serverState(name) {
      return (db.query("SELECT value FROM server_state WHERE name = ?").get(name) as { value: string } | null)?.value ?? null;
    },
    async setServerState(name, value, nowIso) {
      if (value === null) db.query("DELETE FROM server_state WHERE name = ?").run(name);
      else db.query("INSERT INTO server_state (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at").run(name, value, nowIso);
    },
    async insertTransfer(t) {
      db.query(
        "INSERT INTO transfers (id, kind, user_id, session_id, reason, started_at, expires_at, added, cap) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ).run(t.id, t.kind, t.userId, t.sessionId, t.reason, t.startedAt, t.expiresAt, t.added, t.cap);
    },
    async transferById(id) {
      return transferFrom(db.query("SELECT * FROM transfers WHERE id = ?").get(id) as Row | null);
    },
    async sessionTransfer(sessionId) {
      return transferFrom(db.query("SELECT * FROM transfers WHERE session_id = ? AND kind = 'save' ORDER BY started_at DESC LIMIT 1").get(sessionId) as Row | null);
    },
    async addTransferBytes(id, bytes) {
      const r = db.query("UPDATE transfers SET added = added + ? WHERE id = ? RETURNING added").get(bytes, id) as { added: number } | null;
      return r?.added ?? null;
    },
    async deleteTransfer(id) {
      db.query("DELETE FROM transfers WHERE id = ?").run(id);
    },
    async deleteSessionTransfers(sessionId) {
      db.query("DELETE FROM transfers WHERE session_id = ? AND kind = 'save'").run(sessionId);
    },
    async deleteExpiredTransfers(nowMs) {
      return db.query("DELETE FROM transfers WHERE expires_at <= ?").run(nowMs).changes;
    },
    async userHasTransfers(userId, nowMs) {
      return db.query("SELECT 1 FROM transfers WHERE user_id = ? AND expires_at > ?").get(userId, nowMs) !== null;
    },
    async close() {
      db.close();
    },
  };
}
