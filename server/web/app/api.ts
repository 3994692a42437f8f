/**
 * The page's calls to the server's API, each answer parsed with the protocol's schema: the session
 * cookie goes along by itself; every state-changing request carries the CSRF token the server gave
 * at sign-in (`/v1/web/me`).
 */
import { z } from "zod";
import { ErrorBody } from "../../../src/protocol/errors.ts";
import { PutFileResult } from "../../../src/protocol/files.ts";
import { Session, UsageReport } from "../../../src/protocol/session.ts";
import { AttachTicket, DeviceRequest, WebConfig, WebUser } from "../../../src/protocol/web.ts";
import { AnswerResult, PendingRequests, SettledRequests, type RequestAnswer } from "../../../src/protocol/inbox.ts";

let csrf = "";

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly hint?: string) {
    super(message);
  }
}

/** The error a non-2xx answer's body describes, or one that names the status. */
function failure(status: number, body: unknown, fallback: string): ApiError {
  const e = ErrorBody.safeParse(body);
  return e.success ? new ApiError(status, e.data.message, e.data.hint) : new ApiError(status, fallback);
}

async function call<T>(schema: z.ZodType<T>, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...(method !== "GET" ? { "x-csrf-token": csrf } : {}) },
    body: body === undefined ? null : JSON.stringify(body),
    signal: timeoutMs === undefined ? null : AbortSignal.timeout(timeoutMs),
  });
  const json: unknown = await res.json().catch(() => null);
  if (!res.ok) throw failure(res.status, json, `HTTP ${res.status}`);
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new ApiError(res.status, `The server's answer to ${method} ${path} is not what this page expects: reload it.`);
  return parsed.data;
}

/**
 * Hands a file to a running session (`POST /v1/sessions/<label>/files`), reporting upload progress
 * (fetch cannot): resolves to the path the program sees.
 */
function putFile(label: string, file: File, progress: (fraction: number) => void): Promise<{ path: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/sessions/${encodeURIComponent(label)}/files?name=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, `${file.name}: the upload failed (network).`));
    xhr.onload = () => {
      const json = ((): unknown => {
        try {
          return JSON.parse(xhr.responseText);
        } catch {
          return null;
        }
      })();
      const put = PutFileResult.safeParse(json);
      if (xhr.status === 201 && put.success) resolve({ path: put.data.path });
      else reject(failure(xhr.status, json, `${file.name}: HTTP ${xhr.status}`));
    };
    xhr.send(file);
  });
}

const Any = z.unknown();

export const api = {
  putFile,
  async me(): Promise<{ user: string } | null> {
    try {
      const me = await call(WebUser, "GET", "/v1/web/me");
      csrf = me.csrf ?? "";
      return { user: me.user };
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return null;
      throw err;
    }
  },
  async signIn(token: string): Promise<string> {
    const r = await call(WebUser, "POST", "/v1/web/login", { token });
    csrf = r.csrf ?? "";
    return r.user;
  },
  signOut: () => call(Any, "POST", "/v1/web/logout", {}),
  sessions: () => call(z.array(Session), "GET", "/v1/sessions"),
  create: (durationMs: number, region?: string) => call(Session, "POST", "/v1/sessions", { command: [], durationMs, region, cols: 80, rows: 24 }),
  stop: (label: string) => call(Session, "POST", `/v1/sessions/${encodeURIComponent(label)}/stop`, {}),
  /** A ticket for one attach; given up after 10 s (a dead network path can hold a request forever). */
  ticket: (label: string, view: boolean) => call(AttachTicket, "POST", `/v1/sessions/${encodeURIComponent(label)}/ticket`, { view }, 10_000),
  config: () => call(WebConfig, "GET", "/v1/web/config"),
  usage: () => call(UsageReport, "GET", "/v1/usage"),
  device: (code: string) => call(DeviceRequest, "GET", `/v1/device/${encodeURIComponent(code)}`),
  approve: (userCode: string, approve: boolean) => call(Any, "POST", "/v1/device/approve", { userCode, approve }),
  inbox: () => call(PendingRequests, "GET", "/v1/inbox"),
  /** How the user's requests settled in the last minutes went (a card that left the inbox says so). */
  settled: () => call(SettledRequests, "GET", "/v1/inbox/settled"),
  pushKey: () => call(z.object({ publicKey: z.string() }), "GET", "/v1/push/key"),
  pushSubscribe: (sub: PushSubscriptionJSON) => call(Any, "POST", "/v1/push/subscriptions", sub),
  pushDevices: () => call(z.array(z.object({ id: z.string(), push: z.string(), createdAt: z.string() })), "GET", "/v1/push/subscriptions"),
  pushRemove: (id: string) => call(Any, "DELETE", `/v1/push/subscriptions/${encodeURIComponent(id)}`),
  answer: (label: string, id: string, answer: RequestAnswer) => call(AnswerResult, "POST", `/v1/sessions/${encodeURIComponent(label)}/requests/${encodeURIComponent(id)}/answer`, answer),
};
