/**
 * The CLI's HTTP client for the server API. Every failure becomes a `CattyError` whose message
 * says what to do. Every string the server answers (errors included) is made printable here, once
 * (`terminal-text.ts`): whatever the CLI then prints cannot carry escape sequences.
 */
import { z } from "zod";
import { CattyError, ErrorBody } from "../protocol/errors.ts";
import { PutFileResult } from "../protocol/files.ts";
import { ShareCreated, type CreateShare } from "../protocol/forward.ts";
import { AnswerResult, PendingRequests, type PendingRequest, type RequestAnswer } from "../protocol/inbox.ts";
import { printable, printableDeep } from "./terminal-text.ts";
import { RegionInfo, SaveDownload, ServerLimits, Session, UploadResult, UploadStart, UsageReport, type CreateSession, type UploadCommit } from "../protocol/session.ts";

export interface ApiClient {
  readonly api: string;
  readonly token: string;
  whoami(): Promise<{ user: string }>;
  /** Revokes this client's own token on the server (`catty logout`); resolves to its id. */
  revokeToken(): Promise<{ revoked: string }>;
  limits(): Promise<ServerLimits>;
  /** Claude API usage through the server in `month` (YYYY-MM; default this one). */
  usage(month?: string): Promise<UsageReport>;
  /** Where the server can run sessions. */
  regions(): Promise<RegionInfo[]>;
  /** Begins a workspace upload: its blobs go to the URL; committed, its id starts a session (`create({ upload })`). */
  startUpload(): Promise<UploadStart>;
  commitUpload(id: string, body: UploadCommit): Promise<UploadResult>;
  list(): Promise<Session[]>;
  get(label: string): Promise<Session>;
  create(body: CreateSession): Promise<Session>;
  stop(label: string): Promise<Session>;
  /** Hands a file to a running session: it lands in .catty-uploads/; resolves to the path the program sees. */
  putFile(label: string, name: string, bytes: Uint8Array, progress?: (sent: number) => void): Promise<PutFileResult>;
  /**
   * The newest complete save of a session (or the newest made at or before `at`, an ISO time),
   * with a short-lived URL (resolve it with `resolveUrl`).
   */
  latestSave(label: string, at?: string): Promise<SaveDownload>;
  /** Resolves a URL the server handed out (relative ones are on the API server). */
  resolveUrl(url: string): string;
  /** The WebSocket URL of a session's attach endpoint. */
  attachUrl(label: string): string;
  /** A share link to one port of a running session (works signed out until it expires or is revoked). */
  share(label: string, body: CreateShare): Promise<ShareCreated>;
  /** Revokes a session's share links (of one port, or all); how many. */
  revokeShares(label: string, port: number | null): Promise<{ revoked: number }>;
  /** What Claude Code waits on across the user's sessions (the approval inbox). */
  inbox(): Promise<PendingRequest[]>;
  /** Answers a request of a session (its only one when `id` is null). */
  answer(label: string, id: string | null, answer: RequestAnswer): Promise<AnswerResult>;
  /** Types a message into the program and submits it (refused unless it waits at its prompt). */
  send(label: string, text: string): Promise<{ sent: true }>;
}

/** `bytes` as a stream of 64 KiB pieces, reporting how much was taken so far. */
function countedBody(bytes: Uint8Array, progress: (sent: number) => void): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctl) {
      if (at >= bytes.length) return ctl.close();
      const piece = bytes.subarray(at, at + 64 * 1024);
      at += piece.length;
      ctl.enqueue(piece);
      progress(at);
    },
  });
}

export function createApiClient(api: string, token: string): ApiClient {
  async function call<T>(
    method: string,
    path: string,
    schema: z.ZodType<T>,
    body?: unknown,
    file?: { body: ReadableStream<Uint8Array> | Uint8Array; size: number; type: string },
  ): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${api}${path}`, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body ? { "Content-Type": "application/json" } : {}),
          ...(file ? { "Content-Type": file.type, "Content-Length": String(file.size) } : {}),
        },
        body: file ? file.body : body ? JSON.stringify(body) : undefined,
      });
    } catch (err) {
      throw new CattyError(
        "unavailable",
        `Cannot reach the Catty server at ${api} (${(err as Error).message}).`,
        "Check that it is running, or point catty elsewhere with --api URL.",
      );
    }
    const text = await res.text();
    let raw: unknown = null;
    try {
      raw = text ? JSON.parse(text) : null;
    } catch {
      // fall through to the status-based error
    }
    if (!res.ok) {
      const err = ErrorBody.safeParse(raw);
      if (err.success) throw CattyError.from(printableDeep(err.data));
      throw new CattyError("internal", `The server answered ${res.status} ${printable(res.statusText)} to ${method} ${path}.`);
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) throw new CattyError("internal", `Unexpected answer from the server to ${method} ${path}.`);
    return printableDeep(parsed.data);
  }
  const enc = encodeURIComponent;
  return {
    api,
    token,
    whoami: () => call("GET", "/v1/whoami", z.object({ user: z.string() })),
    revokeToken: () => call("DELETE", "/v1/token", z.object({ revoked: z.string().max(64) })),
    limits: () => call("GET", "/v1/config", ServerLimits),
    usage: (month) => call("GET", `/v1/usage${month ? `?month=${encodeURIComponent(month)}` : ""}`, UsageReport),
    regions: () => call("GET", "/v1/regions", z.array(RegionInfo).max(1000)),
    startUpload: () => call("POST", "/v1/uploads/start", UploadStart, {}),
    commitUpload: (id, body) => call("POST", `/v1/uploads/${enc(id)}/commit`, UploadResult, body),
    putFile: (label, name, bytes, progress) =>
      call("POST", `/v1/sessions/${enc(label)}/files?name=${enc(name)}`, PutFileResult, undefined, {
        body: progress ? countedBody(bytes, progress) : bytes,
        size: bytes.length,
        type: "application/octet-stream",
      }),
    list: () => call("GET", "/v1/sessions", z.array(Session)),
    get: (label) => call("GET", `/v1/sessions/${enc(label)}`, Session),
    create: (body) => call("POST", "/v1/sessions", Session, body),
    stop: (label) => call("POST", `/v1/sessions/${enc(label)}/stop`, Session, {}),
    latestSave: (label, at) => call("GET", `/v1/sessions/${enc(label)}/saves/latest${at ? `?at=${enc(at)}` : ""}`, SaveDownload),
    resolveUrl: (url) => new URL(url, `${api}/`).toString(),
    attachUrl: (label) => `${api.replace(/^http/, "ws")}/v1/sessions/${enc(label)}/attach`,
    share: (label, body) => call("POST", `/v1/sessions/${enc(label)}/shares`, ShareCreated, body),
    revokeShares: (label, port) =>
      call("DELETE", `/v1/sessions/${enc(label)}/shares${port === null ? "" : `?port=${port}`}`, z.object({ revoked: z.number().int() })),
    inbox: () => call("GET", "/v1/inbox", PendingRequests),
    answer: (label, id, answer) => call("POST", `/v1/sessions/${enc(label)}/requests${id ? `/${enc(id)}` : ""}/answer`, AnswerResult, answer),
    send: (label, text) => call("POST", `/v1/sessions/${enc(label)}/send`, z.object({ sent: z.literal(true) }), { text }),
  };
}
