/**
 * Session shapes of the HTTP API (`/v1/sessions`), shared by server, CLI and dashboard.
 */
import { z } from "zod";
import { ListeningPort, Port, ShareInfo } from "./forward.ts";
import { Secrets } from "./secrets.ts";

/** `brave-tiger-1234`: two lowercase words and four digits. Anything else is rejected at the edge. */
export const Label = z.string().regex(/^[a-z]{2,16}-[a-z]{2,16}-\d{4}$/, "not a session label");
export type Label = z.infer<typeof Label>;

export const SessionStatus = z.enum(["starting", "running", "stopping", "stopped", "failed", "timed_out"]);
export type SessionStatus = z.infer<typeof SessionStatus>;

/** One stored save of a session's workspace. */
export const SaveInfo = z.object({
  id: z.string(),
  createdAt: z.string(),
  /** Bytes of the files in it (before content-addressed saves: the compressed archive's size). */
  size: z.number().int(),
  files: z.number().int(),
  reason: z.string(),
  /** Bytes of new content this save stored; null for saves from before content-addressed saves. */
  added: z.number().int().nullable().optional(),
});
export type SaveInfo = z.infer<typeof SaveInfo>;

/** `GET /v1/sessions/<label>/saves/latest`: the newest complete save and a short-lived URL to fetch it. */
export const SaveDownload = SaveInfo.extend({
  /** Absolute (S3) or relative to the API server (`/v1/blobs/<ticket>`). */
  url: z.string(),
});
export type SaveDownload = z.infer<typeof SaveDownload>;

/**
 * What a running session's program is doing for its user: `working` (output flowing, or a
 * request being answered), `waiting` (it asks the user something, or is ready for the next
 * prompt), `idle` (quiet, not known to wait). `since`: when it entered the state (ISO time).
 */
export const AttentionState = z.enum(["working", "waiting", "idle"]);
export type AttentionState = z.infer<typeof AttentionState>;
export const Attention = z.object({ state: AttentionState, since: z.string() });
export type Attention = z.infer<typeof Attention>;

/** A region's id, as an operator configures it (`--region`): `local`, `us-east`, `eu-frankfurt`. */
export const RegionId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: "a region is lowercase letters, digits and dashes" });

/** A region's name for people: `local` → "Local", `us-east` → "US East". */
export function regionName(id: string): string {
  return id === "local" ? "Local" : id.split("-").map((w) => (w.length <= 2 ? w.toUpperCase() : `${w[0]?.toUpperCase()}${w.slice(1)}`)).join(" ");
}

/** One of a server's regions (`GET /v1/regions`); the default is where sessions go without `--region`. */
export const RegionInfo = z.object({ id: RegionId, name: z.string().max(200), default: z.boolean() });
export type RegionInfo = z.infer<typeof RegionInfo>;

export const Session = z.object({
  label: Label,
  status: SessionStatus,
  region: z.string(),
  command: z.array(z.string()),
  createdAt: z.string(),
  endedAt: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  endReason: z.string().nullable(),
  /** Stored saves, newest first (the first is the latest). */
  saves: z.array(SaveInfo).default([]),
  /** How the save at the end went: "stored", "unchanged", or "failed: why"; null while running. */
  finalSave: z.string().nullable().default(null),
  idleTimeoutMs: z.number().int().nullable().default(null),
  /** When the session stops because of its maximum duration; null: no maximum. */
  expiresAt: z.string().nullable().default(null),
  /** False when the session's program runs unsandboxed, as the server's own user. */
  isolated: z.boolean().default(true),
  /** While it runs: whether its program waits for the user (null: not known yet, or ended). */
  attention: Attention.nullable().default(null),
  /** The last input or output (while it runs), or when it ended; null when not known. */
  lastActivityAt: z.string().nullable().default(null),
  /** While it runs: the TCP ports its programs listen on ("3000 · node"). */
  ports: z.array(ListeningPort).default([]),
  /** While it runs: the forwards (`catty forward`) running to it now, their ports and since when. */
  forwards: z.array(z.object({ ports: z.array(Port), since: z.string() })).default([]),
  /** While it runs: its share links that still work (`catty forward LABEL PORT --share`). */
  shares: z.array(ShareInfo).default([]),
});
export type Session = z.infer<typeof Session>;

const Dim = z.number().int().min(1).max(1000);

/** Body of `POST /v1/sessions`. An empty `command` means the default (Claude Code or a shell). */
export const CreateSession = z.object({
  command: z.array(z.string().max(4096)).max(256).default([]),
  /** An upload id from `POST /v1/uploads`: the workspace starts as that archive. */
  upload: z.string().regex(/^[A-Za-z0-9-]{8,64}$/).optional(),
  /** Start from the latest save of this (ended or running) session of the same user instead. */
  from: Label.optional(),
  /** Where the session runs: one of the server's regions (`GET /v1/web/config`); default: the server's. */
  region: RegionId.optional(),
  /** Stop after this long without input or output (default: the server's, 2 h). */
  idleTimeoutMs: z.number().int().min(1000).max(30 * 86_400_000).optional(),
  /** Stop after this long in any case (the server bounds it, 1 h to 8 h by default). */
  durationMs: z.number().int().min(1000).max(30 * 86_400_000).optional(),
  cols: Dim.default(80),
  rows: Dim.default(24),
  /**
   * The user's secrets, for the program's environment. The server hands them to the agent once
   * and keeps them nowhere: not in its database, its logs, a save or a file in the machine.
   */
  secrets: Secrets.optional(),
  /**
   * The user's own Claude API key (`catty new --own-api-key`): the program gets it as
   * ANTHROPIC_API_KEY instead of the server's API access (then nothing is metered). Held like a secret.
   */
  ownApiKey: z.string().min(1).max(1024).optional(),
});

/** `GET /v1/usage`: a user's Claude API usage through the server in one month. */
export const UsageReport = z.object({
  month: z.string(),
  /** Tokens per month, or null: no limit. */
  quota: z.number().int().nullable(),
  total: z.object({ requests: z.number(), input: z.number(), output: z.number(), cacheCreation: z.number(), cacheRead: z.number(), tokens: z.number() }),
  sessions: z.array(
    z.object({ label: z.string(), requests: z.number(), input: z.number(), output: z.number(), cacheCreation: z.number(), cacheRead: z.number(), tokens: z.number() }),
  ),
});
export type UsageReport = z.infer<typeof UsageReport>;
export type CreateSession = z.input<typeof CreateSession>;

/** `GET /v1/config`: the server's limits the CLI checks before sending anything. */
export const ServerLimits = z.object({ maxUploadBytes: z.number().int() });
export type ServerLimits = z.infer<typeof ServerLimits>;

/** `POST /v1/uploads` answer. */
export const UploadResult = z.object({ id: z.string(), size: z.number().int() });

/** `POST /v1/uploads/start`: an upload in progress and where its blobs go (`<url>/missing`, `<url>/pack`). */
export const UploadStart = z.object({ id: z.string(), url: z.string() });
export type UploadStart = z.infer<typeof UploadStart>;

/** `POST /v1/uploads/<id>/commit`: every blob is sent; the upload's root tree and what it holds. */
export const UploadCommit = z.object({
  root: z.string().regex(/^[0-9a-f]{64}$/),
  files: z.number().int().min(0),
  size: z.number().int().min(0),
});
export type UploadCommit = z.infer<typeof UploadCommit>;
export type UploadResult = z.infer<typeof UploadResult>;

export const isLive = (s: SessionStatus): boolean => s === "starting" || s === "running" || s === "stopping";
