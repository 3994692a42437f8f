/**
 * The server application: HTTP API under `/v1`, the WebSocket endpoints for agents and clients,
 * and the session lifecycle. `createServer` builds it from its dependencies; `listen` (main.ts,
 * tests) binds it to a socket with `Bun.serve`.
 */
import type { Server } from "bun";
import { z } from "zod";
import {
  CattyError,
  CLOSE,
  CreateSession,
  httpStatus,
  isLive,
  Label,
  type Session,
  type SessionStatus,
} from "../src/protocol/index.ts";
import { formatDuration } from "../src/lib/duration.ts";
import { randomLabel } from "./labels.ts";
import type { Log } from "../src/lib/log.ts";
import { hashToken, newToken } from "./tokens.ts";
import { VERSION } from "../src/lib/version.ts";
import type { BlobStore } from "./blobs/types.ts";
import type { Provider } from "./providers/types.ts";
import { Relay, type SocketData } from "./relay.ts";
import { createSaves, type SaveLimits } from "./saves.ts";
import type { SessionRow, Store, User } from "./store/types.ts";

export interface ServerDeps {
  store: Store;
  provider: Provider;
  blobs: BlobStore;
  /** Serves `/v1/blobs/<ticket>` for stores whose presigned URLs point at this server (disk). */
  blobRoute?(req: Request): Promise<Response>;
  limits: SaveLimits;
  log: Log;
  /** The URL agents dial; known once the server listens. */
  agentUrl(): string;
  /** How long a running session may miss its agent before it is marked failed. */
  agentLostMs?: number;
  /** How long `stop` waits for the program to end before destroying the machine. */
  stopTimeoutMs?: number;
  timeouts: SessionTimeouts;
}

export interface SessionTimeouts {
  /** `CATTY_IDLE_TIMEOUT_MS`: default time without input or output before a session stops (2 h). */
  idleTimeoutMs: number;
  /** `CATTY_MIN_DURATION_MS` / `CATTY_MAX_DURATION_MS`: the range a session's maximum duration may take (1 h to 8 h). */
  minDurationMs: number;
  maxDurationMs: number;
  /** `CATTY_LIFECYCLE_TICK_MS`: how often timeouts are checked (default 5 s). */
  tickMs: number;
}

export interface CattyServer {
  fetch(req: Request, server: Server<SocketData>): Promise<Response | undefined>;
  websocket: Bun.WebSocketHandler<SocketData>;
  /** Checks sessions left running by a previous server process. */
  recover(): Promise<void>;
  close(): void;
}

const json = (body: unknown, status = 200): Response => Response.json(body, { status });
const fail = (err: CattyError): Response => json(err.toBody(), httpStatus[err.code]);

export function toSession(row: SessionRow, saves: Session["saves"] = []): Session {
  return {
    label: row.label,
    status: row.status,
    region: row.region,
    command: row.command,
    createdAt: row.createdAt,
    endedAt: row.endedAt,
    exitCode: row.exitCode,
    endReason: row.endReason,
    saves,
    finalSave: row.finalSave,
    idleTimeoutMs: row.idleTimeoutMs,
    expiresAt: row.expiresAt,
  };
}

function bearer(req: Request): string | null {
  const h = req.headers.get("authorization");
  if (!h) return null;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m?.[1] ?? null;
}

const notFound = (label: string): CattyError =>
  new CattyError("not_found", `Session ${label} not found.`, "Run `catty list` to see your sessions.");

export function createServer(deps: ServerDeps): CattyServer {
  const { store, provider, log } = deps;
  const agentLostMs = deps.agentLostMs ?? 120_000;
  const stopTimeoutMs = deps.stopTimeoutMs ?? 60_000;
  const lostTimers = new Map<string, Timer>();
  /** Sessions the server is ending itself (timeouts): the status and reason their exit gets. */
  const endingAs = new Map<string, { status: SessionStatus; reason: string }>();
  const saves = createSaves({ store, blobs: deps.blobs, log, limits: deps.limits });
  const sessionJson = async (row: SessionRow): Promise<Session> => toSession(row, await saves.savesOf(row.id));

  async function endSession(
    row: SessionRow,
    status: SessionStatus,
    patch: { exitCode?: number | null; endReason: string | null; lastScreen?: string | null },
  ): Promise<SessionRow> {
    const updated = await store.updateSession(row.id, {
      status,
      endedAt: new Date().toISOString(),
      exitCode: patch.exitCode ?? null,
      endReason: patch.endReason,
      ...(patch.lastScreen !== undefined ? { lastScreen: patch.lastScreen } : {}),
    });
    clearTimeout(lostTimers.get(row.id));
    lostTimers.delete(row.id);
    return updated ?? row;
  }

  const relay: Relay = new Relay(
    {
      async onAgentHello(sessionId) {
        clearTimeout(lostTimers.get(sessionId));
        lostTimers.delete(sessionId);
        const row = await store.sessionById(sessionId);
        if (!row) return { restore: null };
        if (row.status === "starting") await store.updateSession(sessionId, { status: "running" });
        return { restore: await saves.restoreFor(row) };
      },
      async onAgentControl(sessionId, msg) {
        const row = await store.sessionById(sessionId);
        if (!row) return null;
        return saves.control(row, msg, (reason) => failSession(row, reason));
      },
      async onExit(sessionId, exit) {
        const row = await store.sessionById(sessionId);
        if (!row) return { status: "stopped", reason: exit.reason };
        if (!isLive(row.status)) return { status: row.status, reason: row.endReason };
        const stopping = row.status === "stopping";
        const asked = endingAs.get(row.id);
        endingAs.delete(row.id);
        const reason = asked?.reason ?? exit.reason ?? (stopping ? "stopped by user" : `program exited with code ${exit.code}`);
        await store.updateSession(row.id, { finalSave: exit.finalSave });
        const ended = await endSession(row, asked?.status ?? "stopped", {
          exitCode: exit.code,
          endReason: reason,
          lastScreen: exit.screen,
        });
        log.info("session ended", { label: row.label, code: exit.code, reason });
        return { status: ended.status, reason: ended.endReason };
      },
      onAgentGone(sessionId) {
        watchLostAgent(sessionId);
      },
    },
    log,
  );

  let closed = false;

  /** A session whose agent stays away, and whose machine is gone, has failed. */
  function watchLostAgent(sessionId: string): void {
    clearTimeout(lostTimers.get(sessionId));
    if (closed) return;
    const check = async (): Promise<void> => {
      lostTimers.delete(sessionId);
      if (closed) return;
      const row = await store.sessionById(sessionId);
      if (!row || !isLive(row.status) || relay.agentConnected(sessionId)) return;
      const alive = row.machine ? await provider.isAlive(row.machine) : false;
      if (alive) {
        lostTimers.set(sessionId, setTimeout(run, agentLostMs));
        return;
      }
      await failSession(row, "the session machine went away (crash or kill)");
    };
    const run = (): void => void check().catch((err: unknown) => log.error("lost-agent check failed", { err }));
    lostTimers.set(sessionId, setTimeout(run, Math.min(agentLostMs, 5_000)));
  }

  /**
   * Ends a session gracefully: the agent stops the program and makes the final save; the exit
   * is recorded with `status` and `reason`. If it does not end in time, the machine is destroyed.
   */
  async function endGracefully(row: SessionRow, status: SessionStatus, reason: string): Promise<SessionRow> {
    if (!endingAs.has(row.id)) {
      endingAs.set(row.id, { status, reason });
      log.info("ending session", { label: row.label, reason });
      await store.updateSession(row.id, { status: "stopping" });
    }
    const exited = relay.stop(row.id, reason) && (await relay.waitForExit(row.id, stopTimeoutMs));
    const current = (await store.sessionById(row.id)) ?? row;
    if (exited || !isLive(current.status)) return current;
    endingAs.delete(row.id);
    if (row.machine) await provider.destroy(row.machine);
    await store.updateSession(row.id, { finalSave: "failed: the session did not stop in time" });
    const ended = await endSession(current, status, { endReason: `${reason} (machine destroyed)` });
    relay.endClients(row.id, { type: "exit", code: 129, status: ended.status, reason: ended.endReason });
    return ended;
  }

  const startedAt = Date.now();
  async function checkTimeouts(): Promise<void> {
    const now = Date.now();
    for (const row of await store.liveSessions()) {
      if (row.status === "stopping" || endingAs.has(row.id)) continue;
      if (row.expiresAt && Date.parse(row.expiresAt) <= now) {
        const took = formatDuration(Date.parse(row.expiresAt) - Date.parse(row.createdAt));
        void endGracefully(row, "timed_out", `reached its maximum duration of ${took}`);
        continue;
      }
      const last = relay.lastActivity(row.id) ?? Math.max(Date.parse(row.createdAt), startedAt);
      if (now - last >= row.idleTimeoutMs) {
        void endGracefully(row, "timed_out", `idle for ${formatDuration(row.idleTimeoutMs)} (no input or output)`);
      }
    }
  }
  const ticker = setInterval(() => void checkTimeouts().catch((err: unknown) => log.error("timeout check failed", { err })), deps.timeouts.tickMs);

  async function failSession(row: SessionRow, reason: string): Promise<void> {
    const ended = await endSession(row, "failed", { endReason: reason });
    log.warn("session failed", { label: row.label, reason });
    relay.endClients(row.id, { type: "exit", code: 1, status: ended.status, reason });
  }

  async function authUser(req: Request): Promise<User> {
    const token = bearer(req);
    if (!token) throw new CattyError("unauthorized", "Missing token.", "Run `catty login`.");
    const user = await store.userByTokenHash(hashToken(token));
    if (!user) throw new CattyError("unauthorized", "Invalid token.", "Run `catty login` again.");
    return user;
  }

  async function sessionOf(user: User, label: string): Promise<SessionRow> {
    if (!Label.safeParse(label).success) throw notFound(label);
    const row = await store.sessionFor(user.id, label);
    if (!row) throw notFound(label);
    return row;
  }

  async function readJson<T>(req: Request, schema: z.ZodType<T>): Promise<T> {
    const text = await req.text();
    if (text.length > 1_000_000) throw new CattyError("too_large", "Request body too large.");
    let raw: unknown = {};
    if (text.trim() !== "") {
      try {
        raw = JSON.parse(text);
      } catch {
        throw new CattyError("bad_request", "Request body is not valid JSON.");
      }
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new CattyError("bad_request", `Invalid request: ${issue?.path.join(".") || "body"}: ${issue?.message}`);
    }
    return parsed.data;
  }

  async function createSession(user: User, req: Request): Promise<Response> {
    const body = await readJson(req, CreateSession);
    let restoreKey: string | null = null;
    if (body.upload) {
      const upload = await store.takeUpload(user.id, body.upload);
      if (!upload) {
        throw new CattyError("bad_request", `Upload ${body.upload} not found (each upload starts one session).`, "Run `catty new` again.");
      }
      restoreKey = upload.key;
    } else if (body.from) {
      const source = await sessionOf(user, body.from);
      const latest = (await store.listSaves(source.id))[0];
      if (!latest) {
        throw new CattyError("not_found", `Session ${source.label} has no save to start from.`, "Run `catty list --json` to see its saves.");
      }
      restoreKey = latest.key;
    }
    const t = deps.timeouts;
    if (body.durationMs !== undefined && (body.durationMs < t.minDurationMs || body.durationMs > t.maxDurationMs)) {
      throw new CattyError(
        "bad_request",
        `The duration must be between ${formatDuration(t.minDurationMs)} and ${formatDuration(t.maxDurationMs)}.`,
      );
    }
    let label = randomLabel();
    for (let i = 0; (await store.labelTaken(label)) && i < 20; i++) label = randomLabel();
    const agentToken = newToken("agt");
    const row: SessionRow = {
      id: crypto.randomUUID(),
      label,
      userId: user.id,
      status: "starting",
      region: provider.region,
      provider: provider.name,
      command: body.command,
      cols: body.cols,
      rows: body.rows,
      agentTokenHash: hashToken(agentToken),
      machine: null,
      createdAt: new Date().toISOString(),
      endedAt: null,
      exitCode: null,
      endReason: null,
      lastScreen: null,
      restoreKey,
      finalSave: null,
      idleTimeoutMs: body.idleTimeoutMs ?? t.idleTimeoutMs,
      expiresAt: body.durationMs ? new Date(Date.now() + body.durationMs).toISOString() : null,
    };
    await store.insertSession(row);
    try {
      const machine = await provider.start({
        label,
        agentToken,
        serverUrl: deps.agentUrl(),
        command: body.command,
        cols: body.cols,
        rows: body.rows,
      });
      const updated = await store.updateSession(row.id, { machine });
      log.info("session created", { label, user: user.name });
      watchLostAgent(row.id);
      return json(await sessionJson(updated ?? row), 201);
    } catch (err) {
      const reason = `could not start the session machine: ${(err as Error).message}`;
      await endSession(row, "failed", { endReason: reason });
      throw new CattyError("unavailable", `Session ${label} could not start: ${(err as Error).message}`);
    }
  }

  async function stopSession(row: SessionRow): Promise<Response> {
    if (!isLive(row.status)) return json(await sessionJson(row));
    return json(await sessionJson(await endGracefully(row, "stopped", "stopped by user")));
  }

  async function route(req: Request, server: Server<SocketData>): Promise<Response | undefined> {
    const url = new URL(req.url);
    const path = url.pathname;
    if (path === "/healthz") return json({ ok: true, version: VERSION });
    // Presigned transfers carry their own signed ticket instead of a bearer token.
    if (path.startsWith("/v1/blobs/") && deps.blobRoute) return deps.blobRoute(req);

    if (path === "/v1/agent/connect") {
      const token = bearer(req);
      const row = token ? await store.sessionByAgentTokenHash(hashToken(token)) : null;
      if (!row) throw new CattyError("unauthorized", "Invalid agent token.");
      // An agent of an ended session is told so on open and stops re-dialling.
      const data: SocketData = { kind: "agent", sessionId: row.id, label: row.label, ended: !isLive(row.status) };
      if (server.upgrade(req, { data })) return undefined;
      throw new CattyError("bad_request", "Expected a WebSocket upgrade.");
    }

    if (!path.startsWith("/v1/")) throw new CattyError("not_found", `No route for ${req.method} ${path}.`);
    const user = await authUser(req);
    const parts = path.split("/").filter(Boolean); // ["v1", ...]
    const method = req.method;

    if (parts.length === 2 && parts[1] === "whoami" && method === "GET") return json({ user: user.name });
    if (parts.length === 2 && parts[1] === "config" && method === "GET") {
      return json({ maxUploadBytes: deps.limits.maxUploadBytes });
    }
    if (parts.length === 2 && parts[1] === "uploads" && method === "POST") return json(await saves.receiveUpload(user, req), 201);
    if (parts[1] !== "sessions") throw new CattyError("not_found", `No route for ${method} ${path}.`);
    if (parts.length === 2) {
      if (method === "GET") return json(await Promise.all((await store.listSessions(user.id)).map(sessionJson)));
      if (method === "POST") return createSession(user, req);
    }
    const label = decodeURIComponent(parts[2] ?? "");
    if (parts.length === 3 && method === "GET") return json(await sessionJson(await sessionOf(user, label)));
    if (parts.length === 5 && parts[3] === "saves" && parts[4] === "latest" && method === "GET") {
      return json(await saves.latestDownload(await sessionOf(user, label)));
    }
    if (parts.length === 4 && parts[3] === "stop" && method === "POST") return stopSession(await sessionOf(user, label));
    if (parts.length === 4 && parts[3] === "attach" && method === "GET") {
      const row = await sessionOf(user, label);
      const data: SocketData = { kind: "client", sessionId: row.id, label: row.label, clientId: relay.newClientId() };
      if (!isLive(row.status)) {
        data.ended = {
          type: "ended",
          status: row.status,
          exitCode: row.exitCode,
          reason: row.endReason,
          screen: row.lastScreen,
        };
      }
      if (server.upgrade(req, { data })) return undefined;
      throw new CattyError("bad_request", "Expected a WebSocket upgrade.");
    }
    throw new CattyError("not_found", `No route for ${method} ${path}.`);
  }

  return {
    async fetch(req, server) {
      try {
        return await route(req, server);
      } catch (err) {
        if (err instanceof CattyError) return fail(err);
        log.error("request failed", { method: req.method, url: req.url, err });
        return fail(new CattyError("internal", "Internal server error."));
      }
    },
    websocket: {
      idleTimeout: 30,
      sendPings: true,
      maxPayloadLength: 16 * 1024 * 1024,
      open(ws) {
        if (!ws.data.ended) return;
        if (ws.data.kind === "client") ws.send(JSON.stringify(ws.data.ended));
        ws.close(CLOSE.ended, "session ended");
      },
      message(ws, msg) {
        if (ws.data.ended) return;
        if (ws.data.kind === "agent") relay.agentMessage(ws, msg);
        else relay.clientMessage(ws, msg);
      },
      close(ws) {
        if (ws.data.kind === "agent") relay.agentClose(ws);
        else relay.clientClose(ws);
      },
      drain(ws) {
        if (ws.data.kind === "client") relay.clientDrain(ws);
      },
    },
    async recover() {
      await saves.cleanUploads();
      for (const row of await store.liveSessions()) {
        const alive = row.machine ? await provider.isAlive(row.machine) : false;
        if (!alive) await failSession(row, "the session machine was gone when the server started");
        else watchLostAgent(row.id);
      }
    },
    close() {
      closed = true;
      clearInterval(ticker);
      for (const t of lostTimers.values()) clearTimeout(t);
      lostTimers.clear();
    },
  };
}
