/**
 * The store on PostgreSQL (`--database-url postgres://…`), through Bun's built-in client
 * (`Bun.SQL`). It keeps what the SQLite store keeps, in the same shapes, so that any number of
 * server replicas can share it. The schema is `MIGRATIONS`, applied in order at start and counted
 * in `catty_schema`; they run in one transaction under an advisory lock, so replicas starting at
 * once apply each migration exactly once and none of them sees a half-migrated schema.
 *
 * Times are ISO strings (as in SQLite: they sort as text); byte counts are BIGINT, which the
 * client hands back as strings (`num`).
 */
import { SQL } from "bun";
import type { Log } from "../../src/lib/log.ts";
import { grantFrom, num, patchColumns, rowReaders, str, strOrNull, type Row } from "./rows.ts";
import type { BlobLocation, HoldResult, SessionRow, Store, UsageRecord } from "./types.ts";

/** Any number: the key of the advisory lock migrations hold ("catty" in ASCII). */
const MIGRATION_LOCK = 0x6361747479;

/** The schema, in order. Each runs once, in the transaction that records it. */
const MIGRATIONS: readonly string[] = [
  // 1: everything the SQLite store had at its schema 5.
  `
  CREATE TABLE users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, token_quota BIGINT
  );
  CREATE TABLE tokens (
    hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), created_at TEXT NOT NULL
  );
  CREATE TABLE sessions (
    seq BIGSERIAL UNIQUE,
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
    idle_timeout_ms BIGINT NOT NULL,
    expires_at TEXT,
    ending_status TEXT,
    ending_reason TEXT,
    proxy_token_hash TEXT,
    attention_state TEXT,
    attention_since TEXT
  );
  CREATE INDEX sessions_user ON sessions(user_id, created_at);
  CREATE INDEX sessions_proxy_token ON sessions(proxy_token_hash);
  CREATE INDEX sessions_live ON sessions(status) WHERE status IN ('starting', 'running', 'stopping');
  CREATE TABLE saves (
    seq BIGSERIAL UNIQUE,
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    size BIGINT NOT NULL,
    files BIGINT NOT NULL,
    reason TEXT NOT NULL,
    added BIGINT
  );
  CREATE INDEX saves_session ON saves(session_id, created_at);
  CREATE INDEX saves_key ON saves(key);
  CREATE TABLE uploads (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), key TEXT NOT NULL, size BIGINT NOT NULL, created_at TEXT NOT NULL
  );
  CREATE INDEX uploads_key ON uploads(key);
  CREATE TABLE usage (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    month TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cache_creation_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, month)
  );
  CREATE INDEX usage_user_month ON usage(user_id, month);
  CREATE TABLE browser_sessions (
    id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT
  );
  CREATE TABLE device_codes (
    device_hash TEXT PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    status TEXT NOT NULL, user_id TEXT REFERENCES users(id), polled_at TEXT
  );
  CREATE TABLE attach_tickets (
    hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), session_id TEXT NOT NULL REFERENCES sessions(id),
    viewer BOOLEAN NOT NULL, expires_at TEXT NOT NULL
  );
  CREATE INDEX attach_tickets_expiry ON attach_tickets(expires_at);
  CREATE TABLE user_keys (
    user_id TEXT PRIMARY KEY REFERENCES users(id), wrapped TEXT NOT NULL, created_at TEXT NOT NULL
  );
  CREATE TABLE blobs (
    user_id TEXT NOT NULL, id TEXT NOT NULL, pack TEXT NOT NULL, "offset" BIGINT NOT NULL, length BIGINT NOT NULL,
    created_at TEXT NOT NULL, PRIMARY KEY (user_id, id)
  );
  CREATE INDEX blobs_pack ON blobs(pack);
  `,
  // 2: several replicas: who relays each session, replicas and leases, transfers in flight.
  `
  ALTER TABLE sessions ADD COLUMN relay_replica TEXT;
  CREATE TABLE replicas (id TEXT PRIMARY KEY, url TEXT NOT NULL, started_at TEXT NOT NULL, seen_at TEXT NOT NULL);
  CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until TEXT NOT NULL);
  CREATE TABLE transfers (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL, session_id TEXT, reason TEXT NOT NULL,
    started_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, added BIGINT NOT NULL, cap BIGINT NOT NULL
  );
  CREATE INDEX transfers_session ON transfers(session_id);
  CREATE INDEX transfers_user ON transfers(user_id);
  `,
  // 3: when input or output last went through a session.
  `ALTER TABLE sessions ADD COLUMN last_activity_at TEXT;`,
  // 4: small blobs sealed together in groups; how many times a user's blobs were deleted.
  `ALTER TABLE blobs ADD COLUMN grouped BOOLEAN NOT NULL DEFAULT false;
   ALTER TABLE user_keys ADD COLUMN deletions BIGINT NOT NULL DEFAULT 0;`,
  // 5: no query looks blobs up by pack; the index cost about a tenth of every blob's insert.
  `DROP INDEX IF EXISTS blobs_pack;`,
  // 6: the quota held by Claude API requests in flight.
  `CREATE TABLE token_holds (
     id TEXT PRIMARY KEY, user_id TEXT NOT NULL, month TEXT NOT NULL, tokens BIGINT NOT NULL, created_at TEXT NOT NULL
   );
   CREATE INDEX token_holds_user ON token_holds(user_id, month);`,
  // 7: who asked for a device code, shown to the person approving it.
  `ALTER TABLE device_codes ADD COLUMN requester_address TEXT;
   ALTER TABLE device_codes ADD COLUMN requester_agent TEXT;`,
  // 8: tokens that expire; the token a browser signed in with (revoking it signs the browser out).
  `ALTER TABLE tokens ADD COLUMN expires_at TEXT;
   ALTER TABLE browser_sessions ADD COLUMN token_hash TEXT;
   CREATE INDEX browser_sessions_token ON browser_sessions(token_hash);`,
  // 9: preview links and share links: capabilities for one port of one session.
  `CREATE TABLE port_grants (
      hash TEXT PRIMARY KEY, kind TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id),
      session_id TEXT NOT NULL REFERENCES sessions(id), port INTEGER NOT NULL,
      created_at TEXT NOT NULL, expires_at TEXT NOT NULL, revoked_at TEXT);
   CREATE INDEX port_grants_session ON port_grants(session_id);`,
  // 10: state the replicas share: the ACME account and the certificates it obtained.
  `CREATE TABLE server_state (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);`,
];

/** Schema versions this server knows. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

async function migrate(sql: SQL, url: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await tx.unsafe("CREATE TABLE IF NOT EXISTS catty_schema (version INTEGER NOT NULL)");
    const rows = (await tx.unsafe("SELECT version FROM catty_schema")) as Row[];
    if (rows.length === 0) await tx.unsafe("INSERT INTO catty_schema (version) VALUES (0)");
    const version = rows.length === 0 ? 0 : num(rows[0]!.version);
    if (version > MIGRATIONS.length) {
      throw new Error(`The database at ${redact(url)} was written by a newer catty-server (schema ${version}); run that version or newer.`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) await tx.unsafe(MIGRATIONS[v]!);
    await tx.unsafe("UPDATE catty_schema SET version = $1", [MIGRATIONS.length]);
  });
}

/** Adds one request's tokens to its session's figures for the month. */
async function addUsage(sql: Pick<SQL, "unsafe">, { userId, sessionId, month, tokens: t }: UsageRecord): Promise<void> {
  await sql.unsafe(
    `INSERT INTO usage AS u (session_id, user_id, month, requests, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens)
     VALUES ($1, $2, $3, 1, $4, $5, $6, $7)
     ON CONFLICT (session_id, month) DO UPDATE SET requests = u.requests + 1,
       input_tokens = u.input_tokens + excluded.input_tokens, output_tokens = u.output_tokens + excluded.output_tokens,
       cache_creation_tokens = u.cache_creation_tokens + excluded.cache_creation_tokens,
       cache_read_tokens = u.cache_read_tokens + excluded.cache_read_tokens`,
    [sessionId, userId, month, t.input, t.output, t.cacheCreation, t.cacheRead],
  );
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, "$1***@");
}

export async function openPostgresStore(url: string, opts: { log?: Log; maxConnections?: number } = {}): Promise<Store> {
  const sql = new SQL(url, { max: opts.maxConnections ?? 10, connectionTimeout: 10 });
  try {
    await migrate(sql, url);
  } catch (err) {
    await sql.close().catch(() => {});
    const why = err instanceof Error ? err.message : String(err);
    if (/newer catty-server/.test(why)) throw err;
    throw new Error(`Could not open the database at ${redact(url)}: ${why}. Check the URL (--database-url, CATTY_DATABASE_URL) and that PostgreSQL runs and is reachable from here.`);
  }
  const q = (text: string, params: unknown[] = []): Promise<Row[]> => sql.unsafe(text, params) as Promise<Row[]>;
  const one = async (text: string, params: unknown[] = []): Promise<Row | null> => (await q(text, params))[0] ?? null;

  const rows = rowReaders(opts.log);
  const { sessionFrom, saveFrom, uploadFrom, deviceFrom, userFrom, replicaFrom, transferFrom, tokenFrom } = rows;
  const sessionBy = async (where: string, params: unknown[]): Promise<SessionRow | null> => {
    const r = await one(`SELECT * FROM sessions WHERE ${where}`, params);
    return r ? sessionFrom(r) : null;
  };
  const blobLocations = async (userId: string, ids: readonly string[]): Promise<Map<string, BlobLocation>> => {
    const out = new Map<string, BlobLocation>();
    if (ids.length === 0) return out;
    const rows = await q(`SELECT id, pack, "offset", length, grouped FROM blobs WHERE user_id = $1 AND id = ANY($2::text[])`, [userId, [...ids]]);
    for (const r of rows) {
      const loc: BlobLocation = { pack: str(r.pack), offset: num(r.offset), length: num(r.length) };
      if (r.grouped === true) loc.grouped = true;
      out.set(str(r.id), loc);
    }
    return out;
  };

  return {
    async countUsers() {
      return num((await one("SELECT count(*) AS n FROM users"))?.n ?? 0);
    },
    async createUser(name) {
      const user = { id: crypto.randomUUID(), name, createdAt: new Date().toISOString() };
      await q("INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)", [user.id, name, user.createdAt]);
      return user;
    },
    async insertUser(user) {
      await q("INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3)", [user.id, user.name, user.createdAt]);
    },
    async userByName(name) {
      return userFrom(await one("SELECT * FROM users WHERE name = $1", [name]));
    },
    async userById(id) {
      return userFrom(await one("SELECT * FROM users WHERE id = $1", [id]));
    },
    async addToken(userId, tokenHash, expiresAt = null) {
      await q("INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)", [tokenHash, userId, new Date().toISOString(), expiresAt]);
    },
    async userByTokenHash(tokenHash) {
      return userFrom(
        await one("SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)", [
          tokenHash,
          new Date().toISOString(),
        ]),
      );
    },
    async listTokens(userId) {
      const where = userId ? "WHERE t.user_id = $1" : "";
      return (await q(`SELECT t.*, u.name FROM tokens t JOIN users u ON u.id = t.user_id ${where} ORDER BY t.created_at, t.hash`, userId ? [userId] : [])).map(tokenFrom);
    },
    async revokeToken(tokenHash) {
      return sql.begin(async (tx) => {
        await tx.unsafe("UPDATE browser_sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL", [new Date().toISOString(), tokenHash]);
        return ((await tx.unsafe("DELETE FROM tokens WHERE hash = $1 RETURNING hash", [tokenHash])) as Row[]).length > 0;
      });
    },
    async insertSession(s) {
      await q(
        `INSERT INTO sessions (id, label, user_id, status, region, provider, command, cols, rows,
           agent_token_hash, machine, created_at, ended_at, exit_code, end_reason, last_screen, restore_key, final_save,
           idle_timeout_ms, expires_at, ending_status, ending_reason, attention_state, attention_since)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)`,
        [
          s.id, s.label, s.userId, s.status, s.region, s.provider, JSON.stringify(s.command), s.cols, s.rows,
          s.agentTokenHash, s.machine ? JSON.stringify(s.machine) : null, s.createdAt, s.endedAt, s.exitCode,
          s.endReason, s.lastScreen, s.restoreKey, s.finalSave, s.idleTimeoutMs, s.expiresAt,
          s.ending?.status ?? null, s.ending?.reason ?? null, s.attention?.state ?? null, s.attention?.since ?? null,
        ],
      );
    },
    async labelTaken(label) {
      return (await one("SELECT 1 FROM sessions WHERE label = $1", [label])) !== null;
    },
    async sessionFor(userId, label) {
      return sessionBy("user_id = $1 AND label = $2", [userId, label]);
    },
    async sessionByAgentTokenHash(tokenHash) {
      return sessionBy("agent_token_hash = $1", [tokenHash]);
    },
    async sessionById(id) {
      return sessionBy("id = $1", [id]);
    },
    async listSessions(userId) {
      return (await q("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, seq DESC", [userId])).map(sessionFrom);
    },
    async liveSessions() {
      return (await q("SELECT * FROM sessions WHERE status IN ('starting', 'running', 'stopping')")).map(sessionFrom);
    },
    async updateSession(id, patch) {
      const columns = patchColumns(patch);
      if (columns.length === 0) return sessionBy("id = $1", [id]);
      const sets = columns.map(([c], i) => `${c} = $${i + 1}`).join(", ");
      const r = await one(`UPDATE sessions SET ${sets} WHERE id = $${columns.length + 1} RETURNING *`, [...columns.map(([, v]) => v), id]);
      return r ? sessionFrom(r) : null;
    },
    async setProxyToken(sessionId, tokenHash) {
      await q("UPDATE sessions SET proxy_token_hash = $1 WHERE id = $2", [tokenHash, sessionId]);
    },
    async sessionByProxyTokenHash(tokenHash) {
      return sessionBy("proxy_token_hash = $1", [tokenHash]);
    },
    async addUsage(userId, sessionId, month, tokens) {
      await addUsage(sql, { userId, sessionId, month, tokens });
    },
    async usageOf(userId, month) {
      const rows = await q(
        `SELECT u.*, s.label FROM usage u JOIN sessions s ON s.id = u.session_id
         WHERE u.user_id = $1 AND u.month = $2 ORDER BY s.created_at DESC, s.seq DESC`,
        [userId, month],
      );
      return rows.map((r) => ({
        sessionId: str(r.session_id), label: str(r.label), month: str(r.month), requests: num(r.requests),
        input: num(r.input_tokens), output: num(r.output_tokens), cacheCreation: num(r.cache_creation_tokens), cacheRead: num(r.cache_read_tokens),
      }));
    },
    async setTokenQuota(userId, tokens) {
      await q("UPDATE users SET token_quota = $1 WHERE id = $2", [tokens, userId]);
    },
    async tokenQuota(userId) {
      return num((await one("SELECT token_quota FROM users WHERE id = $1", [userId]))?.token_quota ?? null, true);
    },
    async holdTokens(h, staleBeforeIso) {
      // The user's row, locked for the transaction, makes one check-and-hold at a time per user;
      // settleHold takes the same lock, so a check never sees a request's usage and its hold both
      // (or neither).
      return sql.begin(async (tx): Promise<HoldResult> => {
        const user = (await tx.unsafe("SELECT token_quota FROM users WHERE id = $1 FOR UPDATE", [h.userId]))[0] as Row | undefined;
        const quota = num(user?.token_quota ?? null, true);
        if (quota === null) return { ok: true };
        await tx.unsafe("DELETE FROM token_holds WHERE user_id = $1 AND created_at < $2", [h.userId, staleBeforeIso]);
        const [u] = (await tx.unsafe(
          `SELECT coalesce(sum(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens), 0) AS used,
             (SELECT coalesce(sum(tokens), 0) FROM token_holds WHERE user_id = $1 AND month = $2) AS held
           FROM usage WHERE user_id = $1 AND month = $2`,
          [h.userId, h.month],
        )) as Row[];
        const used = num(u?.used ?? 0);
        const held = num(u?.held ?? 0);
        if (used + held >= quota) return { ok: false, used, held, quota };
        if (h.tokens > 0) {
          await tx.unsafe("INSERT INTO token_holds (id, user_id, month, tokens, created_at) VALUES ($1, $2, $3, $4, $5)", [h.id, h.userId, h.month, h.tokens, h.createdAt]);
        }
        return { ok: true };
      });
    },
    async settleHold(holdId, usage) {
      if (!usage) {
        await q("DELETE FROM token_holds WHERE id = $1", [holdId]);
        return;
      }
      await sql.begin(async (tx) => {
        await tx.unsafe("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", [usage.userId]);
        await tx.unsafe("DELETE FROM token_holds WHERE id = $1", [holdId]);
        await addUsage(tx, usage);
      });
    },
    async insertBrowserSession(s) {
      await q("INSERT INTO browser_sessions (id_hash, user_id, csrf, created_at, expires_at, token_hash) VALUES ($1, $2, $3, $4, $5, $6)", [
        s.idHash, s.userId, s.csrf, s.createdAt, s.expiresAt, s.tokenHash ?? null,
      ]);
    },
    async browserSession(idHash, nowIso) {
      const r = await one("SELECT * FROM browser_sessions WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2", [idHash, nowIso]);
      return r ? { idHash: str(r.id_hash), userId: str(r.user_id), csrf: str(r.csrf), createdAt: str(r.created_at), expiresAt: str(r.expires_at) } : null;
    },
    async revokeBrowserSession(idHash) {
      await q("UPDATE browser_sessions SET revoked_at = $1 WHERE id_hash = $2", [new Date().toISOString(), idHash]);
    },
    async insertDeviceCode(d) {
      await q(
        "INSERT INTO device_codes (device_hash, user_code, created_at, expires_at, status, user_id, polled_at, requester_address, requester_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [d.deviceHash, d.userCode, d.createdAt, d.expiresAt, d.status, d.userId, d.polledAt, d.requesterAddress, d.requesterAgent],
      );
    },
    async deviceCodeByHash(deviceHash) {
      return deviceFrom(await one("SELECT * FROM device_codes WHERE device_hash = $1", [deviceHash]));
    },
    async deviceCodeByUserCode(userCode) {
      return deviceFrom(await one("SELECT * FROM device_codes WHERE user_code = $1", [userCode]));
    },
    async updateDeviceCode(deviceHash, patch) {
      const sets: string[] = [];
      const values: Array<string | null> = [];
      const set = (column: string, value: string | null): void => {
        values.push(value);
        sets.push(`${column} = $${values.length}`);
      };
      if (patch.status !== undefined) set("status", patch.status);
      if (patch.userId !== undefined) set("user_id", patch.userId);
      if (patch.polledAt !== undefined) set("polled_at", patch.polledAt);
      if (sets.length > 0) await q(`UPDATE device_codes SET ${sets.join(", ")} WHERE device_hash = $${values.length + 1}`, [...values, deviceHash]);
    },
    async redeemDeviceCode(deviceHash, nowIso) {
      const r = await one("UPDATE device_codes SET status = 'used' WHERE device_hash = $1 AND status = 'approved' AND expires_at > $2 RETURNING user_id", [deviceHash, nowIso]);
      return strOrNull(r?.user_id ?? null);
    },
    async insertTicket(t) {
      await q("INSERT INTO attach_tickets (hash, user_id, session_id, viewer, expires_at) VALUES ($1, $2, $3, $4, $5)", [
        t.hash, t.userId, t.sessionId, t.viewer, t.expiresAt,
      ]);
    },
    async takeTicket(hash, nowIso) {
      // DELETE … RETURNING: of two replicas taking the same ticket at once, one gets the row.
      const r = await one("DELETE FROM attach_tickets WHERE hash = $1 RETURNING *", [hash]);
      await q("DELETE FROM attach_tickets WHERE expires_at <= $1", [nowIso]);
      if (!r || str(r.expires_at) <= nowIso) return null;
      return { hash: str(r.hash), userId: str(r.user_id), sessionId: str(r.session_id), viewer: r.viewer === true, expiresAt: str(r.expires_at) };
    },
    async insertPortGrant(g) {
      await q("INSERT INTO port_grants (hash, kind, user_id, session_id, port, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
        g.hash, g.kind, g.userId, g.sessionId, g.port, g.createdAt, g.expiresAt, g.revokedAt,
      ]);
    },
    async takePortGrant(hash, nowIso) {
      // A ticket is deleted as it is read (one replica gets it); other kinds are only read.
      const ticket = await one("DELETE FROM port_grants WHERE hash = $1 AND kind = 'ticket' RETURNING *", [hash]);
      const r = ticket ?? (await one("SELECT * FROM port_grants WHERE hash = $1", [hash]));
      await q("DELETE FROM port_grants WHERE expires_at <= $1", [nowIso]);
      if (!r) return null;
      const g = grantFrom(r);
      return g.expiresAt <= nowIso || g.revokedAt !== null ? null : g;
    },
    async listShares(sessionId, nowIso) {
      const rows = await q("SELECT * FROM port_grants WHERE session_id = $1 AND kind = 'share' AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC", [sessionId, nowIso]);
      return rows.map(grantFrom);
    },
    async revokeShares(sessionId, port, nowIso) {
      const r = await q(
        "UPDATE port_grants SET revoked_at = $1 WHERE session_id = $2 AND ($3::int IS NULL OR port = $3) AND revoked_at IS NULL AND kind = 'share' AND expires_at > $1 RETURNING hash",
        [nowIso, sessionId, port],
      );
      return r.length;
    },
    async insertSave(r) {
      await q("INSERT INTO saves (id, session_id, key, created_at, size, files, reason, added) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", [
        r.id, r.sessionId, r.key, r.createdAt, r.size, r.files, r.reason, r.added,
      ]);
    },
    async listSaves(sessionId) {
      return (await q("SELECT * FROM saves WHERE session_id = $1 ORDER BY created_at DESC, seq DESC", [sessionId])).map(saveFrom);
    },
    async saveKeyExists(key) {
      return (await one("SELECT 1 FROM saves WHERE key = $1", [key])) !== null;
    },
    async deleteSave(id) {
      await q("DELETE FROM saves WHERE id = $1", [id]);
    },
    async insertUpload(r) {
      await q("INSERT INTO uploads (id, user_id, key, size, created_at) VALUES ($1, $2, $3, $4, $5)", [r.id, r.userId, r.key, r.size, r.createdAt]);
    },
    async takeUpload(userId, id) {
      const r = await one("DELETE FROM uploads WHERE id = $1 AND user_id = $2 RETURNING *", [id, userId]);
      return r ? uploadFrom(r) : null;
    },
    async staleUploads(beforeIso) {
      return (await q("SELECT * FROM uploads WHERE created_at < $1", [beforeIso])).map(uploadFrom);
    },
    async deleteUpload(id) {
      await q("DELETE FROM uploads WHERE id = $1", [id]);
    },
    async uploadKeyExists(key) {
      return (await one("SELECT 1 FROM uploads WHERE key = $1", [key])) !== null;
    },
    async savesOfUser(userId) {
      return (await q("SELECT saves.* FROM saves JOIN sessions ON sessions.id = saves.session_id WHERE sessions.user_id = $1", [userId])).map(saveFrom);
    },
    async uploadsOfUser(userId) {
      return (await q("SELECT * FROM uploads WHERE user_id = $1", [userId])).map(uploadFrom);
    },
    async userKey(userId) {
      return strOrNull((await one("SELECT wrapped FROM user_keys WHERE user_id = $1", [userId]))?.wrapped ?? null);
    },
    async insertUserKey(userId, wrapped) {
      // Two replicas making a user's first key at once: the first stored wins, and both use it.
      await q("INSERT INTO user_keys (user_id, wrapped, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING", [
        userId, wrapped, new Date().toISOString(),
      ]);
      return str((await one("SELECT wrapped FROM user_keys WHERE user_id = $1", [userId]))?.wrapped);
    },
    async blobsPresent(userId, ids) {
      return new Set((await blobLocations(userId, ids)).keys());
    },
    async insertBlobs(userId, rows) {
      if (rows.length === 0) return new Set();
      const inserted = await q(
        `INSERT INTO blobs (user_id, id, pack, "offset", length, grouped, created_at)
         SELECT $1, a.id, a.pack, a.off, a.len, a.grouped, $7
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::boolean[]) AS a(id, pack, off, len, grouped)
         ON CONFLICT (user_id, id) DO NOTHING
         RETURNING id`,
        [userId, rows.map((r) => r.id), rows.map((r) => r.pack), rows.map((r) => r.offset), rows.map((r) => r.length), rows.map((r) => r.grouped === true), new Date().toISOString()],
      );
      return new Set(inserted.map((r) => str(r.id)));
    },
    blobLocations,
    async blobsOfUser(userId) {
      return (await q("SELECT id, pack FROM blobs WHERE user_id = $1", [userId])).map((r) => ({ id: str(r.id), pack: str(r.pack) }));
    },
    async deleteBlobs(userId, ids) {
      if (ids.length === 0) return;
      await sql.begin(async (tx) => {
        await tx.unsafe("DELETE FROM blobs WHERE user_id = $1 AND id = ANY($2::text[])", [userId, [...ids]]);
        await tx.unsafe("UPDATE user_keys SET deletions = deletions + 1 WHERE user_id = $1", [userId]);
      });
    },
    async blobDeletions(userId) {
      return num((await one("SELECT deletions FROM user_keys WHERE user_id = $1", [userId]))?.deletions ?? 0);
    },
    async usersWithBlobs() {
      return (await q("SELECT DISTINCT user_id FROM blobs")).map((r) => str(r.user_id));
    },
    async endSession(id, patch) {
      const columns = patchColumns(patch);
      const sets = columns.map(([c], i) => `${c} = $${i + 1}`).join(", ");
      const r = await one(
        `UPDATE sessions SET ${sets} WHERE id = $${columns.length + 1} AND status IN ('starting', 'running', 'stopping') RETURNING *`,
        [...columns.map(([, v]) => v), id],
      );
      return r ? sessionFrom(r) : null;
    },
    async beatReplica(r, nowIso) {
      await q(
        "INSERT INTO replicas (id, url, started_at, seen_at) VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, seen_at = EXCLUDED.seen_at",
        [r.id, r.url, nowIso],
      );
    },
    async replicas(sinceIso) {
      return (await q("SELECT * FROM replicas WHERE seen_at >= $1 ORDER BY started_at, id", [sinceIso])).map(replicaFrom);
    },
    async removeReplica(id) {
      await q("DELETE FROM replicas WHERE id = $1", [id]);
    },
    async takeLease(name, holder, untilIso, nowIso) {
      const r = await one(
        `INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
         WHERE leases.holder = EXCLUDED.holder OR leases.until <= $4 RETURNING holder`,
        [name, holder, untilIso, nowIso],
      );
      return r?.holder === holder;
    },
    async releaseLease(name, holder) {
      await q("DELETE FROM leases WHERE name = $1 AND holder = $2", [name, holder]);
    },
    async leaseHeld(name, nowIso) {
      return (await one("SELECT 1 FROM leases WHERE name = $1 AND until > $2", [name, nowIso])) !== null;
    },
    async serverState(name) {
      return ((await one("SELECT value FROM server_state WHERE name = $1", [name]))?.value as string | undefined) ?? null;
    },
    async setServerState(name, value, nowIso) {
      if (value === null) await q("DELETE FROM server_state WHERE name = $1", [name]);
      else await q("INSERT INTO server_state (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at", [name, value, nowIso]);
    },
    async insertTransfer(t) {
      await q(
        "INSERT INTO transfers (id, kind, user_id, session_id, reason, started_at, expires_at, added, cap) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [t.id, t.kind, t.userId, t.sessionId, t.reason, t.startedAt, t.expiresAt, t.added, t.cap],
      );
    },
    async transferById(id) {
      return transferFrom(await one("SELECT * FROM transfers WHERE id = $1", [id]));
    },
    async sessionTransfer(sessionId) {
      return transferFrom(await one("SELECT * FROM transfers WHERE session_id = $1 AND kind = 'save' ORDER BY started_at DESC LIMIT 1", [sessionId]));
    },
    async addTransferBytes(id, bytes) {
      const r = await one("UPDATE transfers SET added = added + $1 WHERE id = $2 RETURNING added", [bytes, id]);
      return r ? num(r.added) : null;
    },
    async deleteTransfer(id) {
      await q("DELETE FROM transfers WHERE id = $1", [id]);
    },
    async deleteSessionTransfers(sessionId) {
      await q("DELETE FROM transfers WHERE session_id = $1 AND kind = 'save'", [sessionId]);
    },
    async deleteExpiredTransfers(nowMs) {
      return (await q("DELETE FROM transfers WHERE expires_at <= $1 RETURNING id", [nowMs])).length;
    },
    async userHasTransfers(userId, nowMs) {
      return (await one("SELECT 1 FROM transfers WHERE user_id = $1 AND expires_at > $2", [userId, nowMs])) !== null;
    },
    async close() {
      await sql.close();
    },
  };
}
