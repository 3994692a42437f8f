/**
 * The wire protocol: one message union per WebSocket direction, as zod schemas.
 *
 * Links: the CLI (or browser) talks to the server on `/v1/sessions/<label>/attach`; the agent
 * inside each session machine dials the server on `/v1/agent/connect`. The server relays between
 * them. Control messages are JSON text frames; PTY output travels in binary frames (`frames.ts`).
 * Each side parses incoming text once at the socket edge with `parse*` below.
 */
import { z } from "zod";
import { ErrorBody } from "./errors.ts";
import { ForwardId, ListeningPort, MUX_MAX_STREAMS } from "./forward.ts";
import { AttentionState, SessionStatus } from "./session.ts";

/** Bumped on any incompatible change; exchanged in the first message of every link. */
export const PROTOCOL_VERSION = 1;

const Dim = z.number().int().min(1).max(1000);
const Offset = z.number().int().min(0);
const ClientId = z.number().int().min(1).max(0xffffffff);
const SaveId = z.string().regex(/^[A-Za-z0-9-]{8,64}$/);
/** One handed file's transfer between server and agent. */
const FileId = SaveId;
export const SaveReason = z.enum(["initial", "periodic", "final"]);
export type SaveReason = z.infer<typeof SaveReason>;

export const ClientMode = z.enum(["interactive", "view"]);
export type ClientMode = z.infer<typeof ClientMode>;

// ── sync-back events (agent → server → the interactive client that asked) ──────────────────────

const RelPath = z.string().min(1).max(4096);
const Seq = z.number().int().min(0);

export const SyncEvent = z.discriminatedUnion("kind", [
  /** Sync-back is on; changes since `since` follow, then `caught_up`. */
  z.object({ kind: z.literal("start"), epoch: z.string().max(64), seq: Seq }),
  /** A file's content follows in binary sync frames of `transfer`, then `file_end`. */
  z.object({ kind: z.literal("file"), seq: Seq, path: RelPath, size: z.number().int().min(0), transfer: z.number().int().min(1) }),
  /** All of a file's bytes were sent: `bytes` of them (a transfer that got fewer is discarded). */
  z.object({ kind: z.literal("file_end"), transfer: z.number().int().min(1), bytes: z.number().int().min(0).optional() }),
  /** A directory exists. */
  z.object({ kind: z.literal("dir"), seq: Seq, path: RelPath }),
  /** A file or (empty) directory is gone. */
  z.object({ kind: z.literal("delete"), seq: Seq, path: RelPath }),
  /** A symlink exists with this target, whatever it points to (the client judges it: src/lib/safe-fs.ts). */
  z.object({ kind: z.literal("symlink"), seq: Seq, path: RelPath, target: z.string().min(1).max(4096) }),
  /** A change not sent (too large). */
  z.object({ kind: z.literal("skip"), seq: Seq, path: RelPath, reason: z.string() }),
  /** Everything up to `seq` was sent. */
  z.object({ kind: z.literal("caught_up"), seq: Seq }),
]);
export type SyncEvent = z.infer<typeof SyncEvent>;

/**
 * Where a client's sync-back stands: the agent's journal epoch and the last change applied; and
 * whether it makes symlinks (`links`: it knows the `symlink` event; an older client is told with a
 * `skip` instead).
 */
export const SyncPosition = z.object({ epoch: z.string().max(64).nullable(), seq: Seq, links: z.boolean().optional() });
export type SyncPosition = z.infer<typeof SyncPosition>;

// ── client → server ────────────────────────────────────────────────────────────────────────────

export const ClientToServer = z.discriminatedUnion("type", [
  /** Client, first message: who it is and the last output offset it holds (null: none). */
  z.object({
    type: z.literal("hello"),
    protocol: z.number().int(),
    mode: ClientMode,
    offset: Offset.nullable(),
    cols: Dim,
    rows: Dim,
    /** Set when the client wants sync-back: where it stands (seq 0: everything since the start). */
    syncBack: SyncPosition.nullable().default(null),
    /** This client's random id, the same on every reconnect of one `catty` process. */
    instance: z.string().max(64).default(""),
    /** True on a reconnect: an interactive client that was taken over meanwhile is told so instead. */
    reconnect: z.boolean().default(false),
  }),
  /** Client, when its view may be damaged (a status line was drawn): send the whole screen again. */
  z.object({ type: z.literal("repaint") }),
  /** Interactive client, when its terminal changes size. */
  z.object({ type: z.literal("resize"), cols: Dim, rows: Dim }),
  /** Client, every few seconds: keeps the link alive and measures it. */
  z.object({ type: z.literal("ping"), id: z.number() }),
  /** Client, in answer to a server ping. */
  z.object({ type: z.literal("pong"), id: z.number() }),
]);
export type ClientToServer = z.infer<typeof ClientToServer>;

// ── server → client ────────────────────────────────────────────────────────────────────────────

export const ServerToClient = z.discriminatedUnion("type", [
  /** Server, after hello: the attach is accepted; output follows. */
  z.object({ type: z.literal("attached"), protocol: z.number().int(), label: z.string(), mode: ClientMode }),
  /** Server, while the session machine is not connected yet (starting, or re-dialling). */
  z.object({ type: z.literal("status"), message: z.string() }),
  /** Server (from the agent): the whole screen as escape sequences, valid at `offset`. */
  z.object({ type: z.literal("screen"), offset: Offset, data: z.string(), cols: Dim, rows: Dim }),
  /** Server, when the program exited: the client exits with the same code. */
  z.object({ type: z.literal("exit"), code: z.number().int(), status: SessionStatus, reason: z.string().nullable() }),
  /** Server, when the session had already ended before this attach. */
  z.object({
    type: z.literal("ended"),
    status: SessionStatus,
    exitCode: z.number().int().nullable(),
    reason: z.string().nullable(),
    screen: z.string().nullable(),
  }),
  /** Server, to the interactive client another interactive client replaced. */
  z.object({ type: z.literal("takeover") }),
  /** Server, to a viewer that typed: its input is ignored. */
  z.object({ type: z.literal("view_only") }),
  /** Server (from the agent): a sync-back event for this client. */
  z.object({ type: z.literal("sync"), event: SyncEvent }),
  /** Server, to viewers: the program's attention state changed (see `Attention`). */
  z.object({ type: z.literal("attention"), state: AttentionState, since: z.string() }),
  z.object({ type: z.literal("ping"), id: z.number() }),
  z.object({ type: z.literal("pong"), id: z.number() }),
  ErrorBody,
]);
export type ServerToClient = z.infer<typeof ServerToClient>;

// ── agent → server ─────────────────────────────────────────────────────────────────────────────

export const AgentToServer = z.discriminatedUnion("type", [
  /** Agent, first message on every (re)connect: where the output stream stands. */
  z.object({
    type: z.literal("hello"),
    protocol: z.number().int(),
    offset: Offset,
    cols: Dim,
    rows: Dim,
    pid: z.number().int().nullable(),
  }),
  /** Agent, answering `attach`: the screen for a client that is new or too far behind. */
  z.object({ type: z.literal("screen"), clientId: ClientId, offset: Offset, data: z.string(), cols: Dim, rows: Dim }),
  /** Agent, after a client's catch-up (bytes or screen) is sent: live output follows from `offset`. */
  z.object({ type: z.literal("synced"), clientId: ClientId, offset: Offset }),
  /** Agent, when the program exited and the final save is done (all output was sent before it). Repeated until acknowledged. */
  z.object({
    type: z.literal("exit"),
    code: z.number().int(),
    reason: z.string().nullable(),
    screen: z.string(),
    finalSave: z.string().nullable(),
  }),
  /** Agent, when the workspace it was given could not be restored: the session fails. */
  z.object({ type: z.literal("restore_failed"), error: z.string() }),
  /** Agent, once the workspace is restored (the server may drop the upload). */
  z.object({ type: z.literal("restored"), files: z.number().int(), bytes: z.number().int() }),
  /** Agent, to start a save: asks where to send its blobs. */
  z.object({ type: z.literal("save_request"), id: SaveId, reason: SaveReason }),
  /** Agent, once every blob of the save is stored: the save's root tree and what it holds (files, bytes of files). */
  z.object({
    type: z.literal("save_done"),
    id: SaveId,
    root: z.string().regex(/^[0-9a-f]{64}$/),
    size: z.number().int().min(0),
    files: z.number().int().min(0),
  }),
  /** Agent: a sync-back event for one client. */
  z.object({ type: z.literal("sync"), clientId: ClientId, event: SyncEvent }),
  /** Agent: the program's attention state changed (and again after each hello). */
  z.object({ type: z.literal("attention"), state: AttentionState, since: z.string() }),
  /** Agent, answering put_file: where the file is, as the program sees the path, or why it is not there. */
  z.object({
    type: z.literal("file_put"),
    id: FileId,
    // Typed into the terminal by the client: an absolute path without control characters.
    path: z.string().max(4096).regex(/^\/[^\x00-\x1f\x7f]*$/).nullable(),
    error: z.string().max(1000).nullable(),
  }),
  /** Agent, when the TCP ports the session's programs listen on change (and after each hello). */
  z.object({ type: z.literal("ports"), ports: z.array(ListeningPort).max(MUX_MAX_STREAMS) }),
  /** Agent, in answer to a server ping. */
  z.object({ type: z.literal("pong"), id: z.number() }),
  z.object({ type: z.literal("ping"), id: z.number() }),
]);
export type AgentToServer = z.infer<typeof AgentToServer>;

// ── server → agent ─────────────────────────────────────────────────────────────────────────────

export const ServerToAgent = z.discriminatedUnion("type", [
  /** Server, after the agent's hello: `restore` is where to fetch the initial workspace, until it is restored. */
  z.object({
    type: z.literal("welcome"),
    protocol: z.number().int(),
    label: z.string(),
    restore: z.object({ url: z.string(), size: z.number().int().nullable() }).nullable(),
    /**
     * Until the program has started: variables for its environment (the user's secrets, the
     * session's API access). Never written anywhere by the agent.
     */
    env: z.record(z.string(), z.string()).nullable().default(null),
  }),
  /** Server, answering save_request: the URL the save's blobs go to (`<url>/missing`, `<url>/pack`), or why not. */
  z.object({ type: z.literal("save_target"), id: SaveId, url: z.string().nullable(), error: z.string().nullable() }),
  /** Server, answering save_done: whether the save is now stored as the latest. */
  z.object({ type: z.literal("save_result"), id: SaveId, ok: z.boolean(), error: z.string().nullable() }),
  /** Server, when a client attaches (or must be re-synced): send what it misses after `offset`, and sync-back from `syncBack`. */
  z.object({
    type: z.literal("attach"),
    clientId: ClientId,
    offset: Offset.nullable(),
    syncBack: SyncPosition.nullable().default(null),
    /** A repaint of a client that has everything: the screen without scrollback. */
    repaint: z.boolean().default(false),
  }),
  /** Server, when a client left: stop sending it anything. */
  z.object({ type: z.literal("detach"), clientId: ClientId }),
  /** Server, from the interactive client: the terminal size. */
  z.object({ type: z.literal("resize"), cols: Dim, rows: Dim }),
  /** Server, on `catty stop`: end the program and the session. */
  z.object({ type: z.literal("stop"), reason: z.string() }),
  /** Server, once the exit is recorded: the agent may go. */
  z.object({ type: z.literal("exit_ack") }),
  /** Server: a file the user handed over, to fetch from `url` and write as `.catty-uploads/<name>`. */
  z.object({ type: z.literal("put_file"), id: FileId, name: z.string().max(255), url: z.string(), size: z.number().int().min(0) }),
  /** Server, when a forward's other end (the CLI, a preview) is there: dial `/v1/agent/forward?id=` for it. */
  z.object({ type: z.literal("forward"), id: ForwardId }),
  z.object({ type: z.literal("ping"), id: z.number() }),
  z.object({ type: z.literal("pong"), id: z.number() }),
  ErrorBody,
]);
export type ServerToAgent = z.infer<typeof ServerToAgent>;

/** Parses one text frame; null when it is not JSON or not a known message. */
export function parseMessage<T>(schema: z.ZodType<T>, text: string): T | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const result = schema.safeParse(raw);
  return result.success ? result.data : null;
}
