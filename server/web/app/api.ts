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

export const api = {
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
  create: (durationMs: number) => call<Session>("POST", "/v1/sessions", { command: [], durationMs, cols: 80, rows: 24 }),
  stop: (label: string) => call<Session>("POST", `/v1/sessions/${encodeURIComponent(label)}/stop`, {}),
  ticket: (label: string, view: boolean) => call<{ ticket: string }>("POST", `/v1/sessions/${encodeURIComponent(label)}/ticket`, { view }),
  config: () => call<{ regions: Array<{ id: string; name: string }> }>("GET", "/v1/web/config"),
  usage: () => call<UsageReport>("GET", "/v1/usage"),
  device: (code: string) => call<{ userCode: string }>("GET", `/v1/device/${encodeURIComponent(code)}`),
  approve: (userCode: string, approve: boolean) => call<unknown>("POST", "/v1/device/approve", { userCode, approve }),
};
