/**
 * The database seam. The server talks to `Store` only; SQLite (`bun:sqlite`) is the embedded
 * default and other engines implement the same interface.
 */
import type { Attention, MachineHandle, SessionStatus } from "../../src/protocol/index.ts";

export interface User {
  id: string;
  name: string;
  createdAt: string;
}

export interface SessionRow {
  id: string;
  label: string;
  userId: string;
  status: SessionStatus;
  region: string;
  provider: string;
  command: string[];
  cols: number;
  rows: number;
  agentTokenHash: string;
  /** The provider's handle of the machine; null before it started, or when the stored one is unreadable. */
  machine: MachineHandle | null;
  createdAt: string;
  endedAt: string | null;
  exitCode: number | null;
  endReason: string | null;
  lastScreen: string | null;
  /** Blob the workspace starts from (an upload, or another session's save) until restored. */
  restoreKey: string | null;
  /** How the save at the end went ("stored", "unchanged", "failed: …"). */
  finalSave: string | null;
  idleTimeoutMs: number;
  /** Maximum duration's end (ISO time), if any. */
  expiresAt: string | null;
  /**
   * An ending the server asked for and the program has not finished yet (status "stopping"): what
   * the session is recorded as once it ends. Kept in the row so that a restarted server ends it
   * the same way.
   */
  ending: PendingEnding | null;
  /** While it runs: whether its program waits for the user, as its agent last said. */
  attention: Attention | null;
  /** The replica whose relay holds (or last held) the agent's link; see replicas.ts. */
  relayReplica: string | null;
  /** When input or output last went through, as its relay replica last recorded it (every 15 s at most). */
  lastActivityAt: string | null;
}

export interface PendingEnding {
  status: SessionStatus;
  reason: string;
}

export type SessionPatch = Partial<
  Pick<
    SessionRow,
    | "status"
    | "machine"
    | "endedAt"
    | "exitCode"
    | "endReason"
    | "lastScreen"
    | "cols"
    | "rows"
    | "restoreKey"
    | "finalSave"
    | "ending"
    | "attention"
    | "relayReplica"
    | "lastActivityAt"
  >
>;

export interface SaveRow {
  id: string;
  sessionId: string;
  key: string;
  createdAt: string;
  size: number;
  files: number;
  reason: string;
  /** Bytes of new blobs this save stored (null: a save from before content-addressed saves). */
  added: number | null;
}

/** Where a stored blob is: a byte range of a pack object. */
export interface BlobLocation {
  pack: string;
  offset: number;
  length: number;
  /** The range is a group of small blobs sealed together, this one among them (see the vault). */
  grouped?: boolean;
}

export interface UploadRow {
  id: string;
  userId: string;
  key: string;
  size: number;
  createdAt: string;
}

/** Claude API tokens one proxied request used (as the API reports them). */
export interface TokenCounts {
  input: number;
  output: number;
  cacheCreation: number;
  cacheRead: number;
}

/** A session's metered usage in one month. */
export interface UsageRow extends TokenCounts {
  sessionId: string;
  label: string;
  /** `YYYY-MM` (UTC). */
  month: string;
  requests: number;
}

/** Every token counts toward a quota: input, output, cache writes and cache reads. */
export const tokenTotal = (u: TokenCounts): number => u.input + u.output + u.cacheCreation + u.cacheRead;

/** Tokens held from a user's monthly quota for one Claude API request in flight (see `holdTokens`). */
export interface TokenHold {
  id: string;
  userId: string;
  /** `YYYY-MM` (UTC): the month the request is counted in. */
  month: string;
  /** What the request may use at most, as far as can be told before it goes upstream. */
  tokens: number;
  createdAt: string;
}

/** Whether a hold was granted; when not, what filled the quota. */
export type HoldResult = { ok: true } | { ok: false; used: number; held: number; quota: number };

/** What a request used, recorded when its hold ends. */
export interface UsageRecord {
  userId: string;
  sessionId: string;
  month: string;
  tokens: TokenCounts;
}

/** A signed-in browser: its cookie's hash, the CSRF token its page sends back, and its lifetime. */
export interface BrowserSession {
  idHash: string;
  userId: string;
  csrf: string;
  createdAt: string;
  expiresAt: string;
  /** The hash of the API token it signed in with: revoking that token ends it (stored only; not read back). */
  tokenHash?: string | null;
}

/** An API token as listed: never the token, only its hash (whose first 12 hex digits are its id). */
export interface TokenRow {
  hash: string;
  userId: string;
  userName: string;
  createdAt: string;
  /** When it stops working; null: when it is revoked. */
  expiresAt: string | null;
}

/** A device-code login (RFC 8628) of the CLI, waiting for a signed-in user to approve it. */
export interface DeviceCode {
  deviceHash: string;
  userCode: string;
  createdAt: string;
  expiresAt: string;
  status: "pending" | "approved" | "denied" | "used";
  userId: string | null;
  /** When the CLI last asked (for slow_down). */
  polledAt: string | null;
  /** Who asked for the code, shown to the person approving it: the address and `User-Agent` (null on codes from before). */
  requesterAddress: string | null;
  requesterAgent: string | null;
}

/** A one-use ticket a browser's WebSocket attaches with (browsers cannot set headers). */
export interface AttachTicket {
  hash: string;
  userId: string;
  sessionId: string;
  viewer: boolean;
  expiresAt: string;
}

/**
 * A capability for one port of one session (preview links): a one-use `ticket` handed from the
 * dashboard to a preview host, the `cookie` it is exchanged for there, or a `share` link that
 * works signed out. Random, stored hashed, expiring, revocable; its scope is checked in one place
 * (server/preview.ts `grantAllows`).
 */
export interface PortGrant {
  hash: string;
  kind: "ticket" | "cookie" | "share";
  userId: string;
  sessionId: string;
  port: number;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
}

/** A `catty-server` process sharing the database with others (see replicas.ts). */
export interface ReplicaRow {
  id: string;
  /** Where the other replicas reach it. */
  url: string;
  startedAt: string;
  /** Its last heartbeat. */
  seenAt: string;
}

/** A save or an upload whose blobs are being sent (see saves.ts); times in ms since the epoch. */
export interface TransferRow {
  id: string;
  kind: "save" | "upload";
  userId: string;
  /** Saves: the session. */
  sessionId: string | null;
  reason: string;
  startedAt: number;
  expiresAt: number;
  /** Bytes of new content stored so far. */
  added: number;
  cap: number;
}

export interface Store {
  countUsers(): Promise<number>;
  createUser(name: string): Promise<User>;
  /** Recreates a user as it was (recovery from storage, see vault/recover.ts). */
  insertUser(user: User): Promise<void>;
  userByName(name: string): Promise<User | null>;
  userById(id: string): Promise<User | null>;
  /** A new API token of a user, by its hash, working until `expiresAt` (null or absent: until revoked). */
  addToken(userId: string, tokenHash: string, expiresAt?: string | null): Promise<void>;
  /** The user of a token that is neither revoked nor expired (now). */
  userByTokenHash(tokenHash: string): Promise<User | null>;
  /** Every API token, or one user's, oldest first (then by hash); expired ones too (until revoked). */
  listTokens(userId?: string): Promise<TokenRow[]>;
  /** Deletes a token and, in the same step, ends the browser sessions it signed in; false when there was no such token. */
  revokeToken(tokenHash: string): Promise<boolean>;

  insertSession(row: SessionRow): Promise<void>;
  labelTaken(label: string): Promise<boolean>;
  /** A user's session by label; null for another user's (callers answer 404 either way). */
  sessionFor(userId: string, label: string): Promise<SessionRow | null>;
  sessionByAgentTokenHash(tokenHash: string): Promise<SessionRow | null>;
  sessionById(id: string): Promise<SessionRow | null>;
  /** Newest first. */
  listSessions(userId: string): Promise<SessionRow[]>;
  liveSessions(): Promise<SessionRow[]>;
  updateSession(id: string, patch: SessionPatch): Promise<SessionRow | null>;

  /** The hash of the session's Claude API proxy token (the program's ANTHROPIC_AUTH_TOKEN). */
  setProxyToken(sessionId: string, tokenHash: string | null): Promise<void>;
  sessionByProxyTokenHash(tokenHash: string): Promise<SessionRow | null>;
  /** Adds one request's tokens to its session's figures for `month`. */
  addUsage(userId: string, sessionId: string, month: string, tokens: TokenCounts): Promise<void>;
  /** A user's usage in `month`, per session, newest session first. */
  usageOf(userId: string, month: string): Promise<UsageRow[]>;
  /** Tokens a user may use per month; null: no limit. */
  setTokenQuota(userId: string, tokens: number | null): Promise<void>;
  tokenQuota(userId: string): Promise<number | null>;
  /**
   * Holds `hold.tokens` of the user's quota for a request about to go upstream, in one atomic step
   * (one transaction, the user's row locked on PostgreSQL): refused when what the month used plus
   * what requests in flight hold has reached the quota, so parallel requests cannot all pass a
   * check made before any of them is counted. Holds made before `staleBeforeIso` no longer count
   * (their server died mid-request). A user without a quota is never refused and nothing is held;
   * a hold of 0 tokens only checks.
   */
  holdTokens(hold: TokenHold, staleBeforeIso: string): Promise<HoldResult>;
  /** Ends a hold and, in the same step, records what its request used (null: nothing). */
  settleHold(holdId: string, usage: UsageRecord | null): Promise<void>;

  insertBrowserSession(s: BrowserSession): Promise<void>;
  /** A browser session that is neither revoked nor expired at `nowIso`. */
  browserSession(idHash: string, nowIso: string): Promise<BrowserSession | null>;
  revokeBrowserSession(idHash: string): Promise<void>;

  insertDeviceCode(d: DeviceCode): Promise<void>;
  deviceCodeByHash(deviceHash: string): Promise<DeviceCode | null>;
  deviceCodeByUserCode(userCode: string): Promise<DeviceCode | null>;
  updateDeviceCode(deviceHash: string, patch: Partial<Pick<DeviceCode, "status" | "userId" | "polledAt">>): Promise<void>;
  /** Marks an approved code that has not expired at `nowIso` used, in one step; its user's id, or null (of polls racing, one gets it). */
  redeemDeviceCode(deviceHash: string, nowIso: string): Promise<string | null>;

  insertTicket(t: AttachTicket): Promise<void>;
  /** Removes and returns a ticket that has not expired at `nowIso` (each works once). */
  takeTicket(hash: string, nowIso: string): Promise<AttachTicket | null>;

  insertPortGrant(g: PortGrant): Promise<void>;
  /** A grant that is neither expired at `nowIso` nor revoked; a `ticket` is removed as it is taken (each works once). */
  takePortGrant(hash: string, nowIso: string): Promise<PortGrant | null>;
  /** A session's share links that still work at `nowIso`, newest first. */
  listShares(sessionId: string, nowIso: string): Promise<PortGrant[]>;
  /** Revokes a session's share links (of one port, or all); how many were revoked. */
  revokeShares(sessionId: string, port: number | null, nowIso: string): Promise<number>;

  insertSave(row: SaveRow): Promise<void>;
  /** Newest first. */
  listSaves(sessionId: string): Promise<SaveRow[]>;
  /** Whether a stored save has this blob key (blobs without one are orphans). */
  saveKeyExists(key: string): Promise<boolean>;
  deleteSave(id: string): Promise<void>;

  insertUpload(row: UploadRow): Promise<void>;
  /** Removes and returns a user's upload (each upload starts one session). */
  takeUpload(userId: string, id: string): Promise<UploadRow | null>;
  /** Uploads older than `beforeIso`, for cleanup. */
  staleUploads(beforeIso: string): Promise<UploadRow[]>;
  deleteUpload(id: string): Promise<void>;
  /** Whether an upload row has this blob key. */
  uploadKeyExists(key: string): Promise<boolean>;
  /** Every save of every session of a user. */
  savesOfUser(userId: string): Promise<SaveRow[]>;
  uploadsOfUser(userId: string): Promise<UploadRow[]>;

  /** The user's wrapped save key, if one was made. */
  userKey(userId: string): Promise<string | null>;
  /** Stores `wrapped` unless the user has a key already; resolves to the key that is stored. */
  insertUserKey(userId: string, wrapped: string): Promise<string>;
  /** Which of the ids (stored blob ids) the user's index has. */
  blobsPresent(userId: string, ids: readonly string[]): Promise<Set<string>>;
  /** Indexes blobs (ids already indexed keep their first location); resolves to the ids whose rows it inserted. */
  insertBlobs(userId: string, rows: ReadonlyArray<BlobLocation & { id: string }>): Promise<Set<string>>;
  blobLocations(userId: string, ids: readonly string[]): Promise<Map<string, BlobLocation>>;
  blobsOfUser(userId: string): Promise<Array<{ id: string; pack: string }>>;
  /** Deletes blobs from the index, and counts one more deletion for the user (`blobDeletions`). */
  deleteBlobs(userId: string, ids: readonly string[]): Promise<void>;
  /** How many times blobs of the user were deleted: what a replica knew to be stored may not be since it changed. */
  blobDeletions(userId: string): Promise<number>;
  usersWithBlobs(): Promise<string[]>;

  /**
   * Records the end of a session: `patch` is applied only while the session is live, so of two
   * replicas (or two events) ending it, one does. Null when it had ended already.
   */
  endSession(id: string, patch: SessionPatch): Promise<SessionRow | null>;

  /** Records that a replica is alive at `nowIso` (and where it is reached). */
  beatReplica(replica: { id: string; url: string }, nowIso: string): Promise<void>;
  /** The replicas seen at or after `sinceIso`. */
  replicas(sinceIso: string): Promise<ReplicaRow[]>;
  removeReplica(id: string): Promise<void>;
  /** Takes or renews the lease `name` for `holder` until `untilIso` if it is free, expired at `nowIso`, or `holder`'s: true when `holder` has it. */
  takeLease(name: string, holder: string, untilIso: string, nowIso: string): Promise<boolean>;
  releaseLease(name: string, holder: string): Promise<void>;
  /** Whether anyone holds the lease `name` at `nowIso`. */
  leaseHeld(name: string, nowIso: string): Promise<boolean>;
  /** Server-wide state replicas share (the ACME account, certificates, HTTP-01 answers), by name; null when unset. */
  serverState(name: string): Promise<string | null>;
  /** Sets (null: removes) the server-wide state `name`. */
  setServerState(name: string, value: string | null, nowIso: string): Promise<void>;

  insertTransfer(t: TransferRow): Promise<void>;
  transferById(id: string): Promise<TransferRow | null>;
  /** The save in flight of a session, if any. */
  sessionTransfer(sessionId: string): Promise<TransferRow | null>;
  /** Counts `bytes` more stored by a transfer; resolves to its new total (null: no such transfer). */
  addTransferBytes(id: string, bytes: number): Promise<number | null>;
  deleteTransfer(id: string): Promise<void>;
  /** Drops a session's saves in flight. */
  deleteSessionTransfers(sessionId: string): Promise<void>;
  /** Drops transfers expired at `nowMs`; resolves to how many. */
  deleteExpiredTransfers(nowMs: number): Promise<number>;
  /** Whether a user has a transfer that has not expired at `nowMs`. */
  userHasTransfers(userId: string, nowMs: number): Promise<boolean>;
  close(): Promise<void>;
}
