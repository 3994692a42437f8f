/**
 * The page's calls to the server's API: the session cookie goes along by itself; every
 * state-changing request carries the CSRF token the server gave at sign-in (`/v1/web/me`).
 */
import type { Session, UsageReport } from "../../../src/protocol/session.ts";

let csrf = "";

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly hint?: string) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...(method !== "GET" ? { "x-csrf-token": csrf } : {}) },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const json = (await res.json().catch(() => null)) as { message?: string; hint?: string } | null;
  if (!res.ok) throw new ApiError(res.status, json?.message ?? `HTTP ${res.status}`, json?.hint);
  return json as T;
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
      type Answer = { path?: string; message?: string; hint?: string } | null;
      const json = ((): Answer => {
        try {
          return JSON.parse(xhr.responseText) as Answer;
        } catch {
          return null;
        }
      })();
      if (xhr.status === 201 && json?.path) resolve({ path: json.path });
      else reject(new ApiError(xhr.status, json?.message ?? `${file.name}: HTTP ${xhr.status}`, json?.hint));
    };
    xhr.send(file);
  });
}

/** A `catty login` waiting for approval, and who asked for it. */
export interface DeviceRequest {
  userCode: string;
  createdAt: string;
  expiresAt: string;
  requester: { address: string | null; userAgent: string | null };
}

export const api = {
  putFile,
  async me(): Promise<{ user: string } | null> {
    try {
      const me = await call<{ user: string; csrf: string | null }>("GET", "/v1/web/me");
      csrf = me.csrf ?? "";
      return { user: me.user };
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return null;
      throw err;
    }
  },
  async signIn(token: string): Promise<string> {
    const r = await call<{ user: string; csrf: string }>("POST", "/v1/web/login", { token });
    csrf = r.csrf;
    return r.user;
  },
  signOut: () => call<unknown>("POST", "/v1/web/logout", {}),
  sessions: () => call<Session[]>("GET", "/v1/sessions"),
  create: (durationMs: number, region?: string) => call<Session>("POST", "/v1/sessions", { command: [], durationMs, region, cols: 80, rows: 24 }),
  stop: (label: string) => call<Session>("POST", `/v1/sessions/${encodeURIComponent(label)}/stop`, {}),
  ticket: (label: string, view: boolean) => call<{ ticket: string }>("POST", `/v1/sessions/${encodeURIComponent(label)}/ticket`, { view }),
  config: () => call<{ regions: Array<{ id: string; name: string }> }>("GET", "/v1/web/config"),
  usage: () => call<UsageReport>("GET", "/v1/usage"),
  device: (code: string) => call<DeviceRequest>("GET", `/v1/device/${encodeURIComponent(code)}`),
  approve: (userCode: string, approve: boolean) => call<unknown>("POST", "/v1/device/approve", { userCode, approve }),
};
