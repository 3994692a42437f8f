/**
 * The database seam. The server talks to `Store` only; SQLite (`bun:sqlite`) is the embedded
 * default and other engines implement the same interface.
 */
import type { SessionStatus } from "../../src/protocol/index.ts";

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
  /** Provider-specific handle of the machine (for the local provider: its pid). */
  machine: Record<string, unknown> | null;
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
}

export type SessionPatch = Partial<
  Pick<
    SessionRow,
    "status" | "machine" | "endedAt" | "exitCode" | "endReason" | "lastScreen" | "cols" | "rows" | "restoreKey" | "finalSave"
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
}

export interface UploadRow {
  id: string;
  userId: string;
  key: string;
  size: number;
  createdAt: string;
}

export interface Store {
  countUsers(): Promise<number>;
  createUser(name: string): Promise<User>;
  userByName(name: string): Promise<User | null>;
  addToken(userId: string, tokenHash: string): Promise<void>;
  userByTokenHash(tokenHash: string): Promise<User | null>;

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

  insertSave(row: SaveRow): Promise<void>;
  /** Newest first. */
  listSaves(sessionId: string): Promise<SaveRow[]>;
  deleteSave(id: string): Promise<void>;

  insertUpload(row: UploadRow): Promise<void>;
  /** Removes and returns a user's upload (each upload starts one session). */
  takeUpload(userId: string, id: string): Promise<UploadRow | null>;
  /** Uploads older than `beforeIso`, for cleanup. */
  staleUploads(beforeIso: string): Promise<UploadRow[]>;
  deleteUpload(id: string): Promise<void>;
  close(): void;
}
