/**
 * `/v1/sessions`: list, create, show, stop, the latest save, files handed to a running session, and the attach WebSocket
 * (`/v1/sessions/<label>/attach`, served by the relay once upgraded).
 */
import { usageMonth } from "../anthropic.ts";
import { usageReport } from "./info.ts";
import { Hono } from "hono";
import { formatDuration } from "../../src/lib/duration.ts";
import { CattyError, CreateSession, CreateShare, ErrorBody, ForwardId, Port, type ShareInfo, FILE_MAX_BYTES, fileProblem, isLive, storedFileName, type Session } from "../../src/protocol/index.ts";
import { randomLabel } from "../labels.ts";
import { INTERNAL_HEADER } from "../replicas.ts";
import type { ReplicaRow, SessionRow, User } from "../store/types.ts";
import { hashToken, newToken } from "../tokens.ts";
import { jsonBody, readCapped, requireUser, sessionOf, upgrade, upgradeClient, type AppEnv, type RouteDeps } from "./common.ts";
import { tunnelData } from "../tunnels.ts";
import { newGrant, previewUrl, TICKET_MS } from "../preview.ts";
import type { PortGrant } from "../store/types.ts";

/** A share link as listed: an id from its hash (the token itself is shown once). */
const shareInfo = (g: PortGrant): ShareInfo => ({ id: g.hash.slice(0, 12), port: g.port, createdAt: g.createdAt, expiresAt: g.expiresAt });

export function toSession(
  row: SessionRow,
  saves: Session["saves"] = [],
  isolated = true,
  lastActivity: number | null = null,
  live: Pick<Session, "ports" | "forwards" | "shares"> = { ports: [], forwards: [], shares: [] },
): Session {
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
    isolated,
    attention: isLive(row.status) ? row.attention : null,
    lastActivityAt: isLive(row.status) ? (lastActivity === null ? null : new Date(lastActivity).toISOString()) : row.endedAt,
    ports: isLive(row.status) ? live.ports : [],
    forwards: isLive(row.status) ? live.forwards : [],
    shares: isLive(row.status) ? live.shares : [],
  };
}

export function sessionRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { store, saves, lifecycle, relay, provider } = deps;
  const sessionJson = async (row: SessionRow): Promise<Session> =>
    toSession(row, await saves.savesOf(row.id), provider.isolated, lifecycle.lastActivity(row), {
      ports: lifecycle.listeningPorts(row),
      forwards: relay.tunnels.list(row.id),
      shares: isLive(row.status) ? (await store.listShares(row.id, new Date().toISOString())).map(shareInfo) : [],
    });
  const app = new Hono<AppEnv>();
  // The browser's attach WebSocket comes with a one-use ticket instead (see web-auth.ts).
  const needUser = requireUser(store);
  app.use("*", (c, next) => (c.req.query("ticket") !== undefined && c.req.path.endsWith("/attach") ? next() : needUser(c, next)));

  app.get("/", async (c) => c.json(await Promise.all((await store.listSessions(c.var.user.id)).map(sessionJson))));

  app.post("/", ...jsonBody(CreateSession), async (c) => {
    const row = await newSession(deps, c.var.user, c.req.valid("json"));
    return c.json(await sessionJson(row), 201);
  });

  app.get("/:label", async (c) => c.json(await sessionJson(await sessionOf(store, c.var.user, c.req.param("label")))));

  // ?at=TIME: the newest save made at or before TIME.
  app.get("/:label/saves/latest", async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    const at = c.req.query("at");
    if (at === undefined) return c.json(await saves.download(row));
    const when = Date.parse(at);
    if (Number.isNaN(when)) throw new CattyError("bad_request", `${JSON.stringify(at)} is not a time.`, "Give an ISO time such as 2026-11-29T10:30:00Z.");
    return c.json(await saves.download(row, { at: when }));
  });

  // The dashboard's download link: to the latest save's short-lived URL.
  app.get("/:label/saves/latest/download", async (c) => {
    const got = await saves.download(await sessionOf(store, c.var.user, c.req.param("label")));
    return c.redirect(new URL(got.url, c.req.url).toString(), 302);
  });

  app.post("/:label/stop", async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    if (!isLive(row.status)) return c.json(await sessionJson(row));
    return c.json(await sessionJson((await lifecycle.stop(row)) ?? row));
  });

  // A file handed to the running session (dropped on the dashboard's terminal, pasted into catty
  // connect): the body is the file, ?name= its name; answers the path the program sees.
  app.post("/:label/files", async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    if (row.status !== "running") {
      throw new CattyError("conflict", `Session ${row.label} is ${row.status}; files go only to a running session.`);
    }
    const name = c.req.query("name") ?? "";
    const declared = Number(c.req.header("content-length") ?? NaN);
    const problem = fileProblem(name, Number.isFinite(declared) ? declared : 0);
    if (problem) throw new CattyError(problem.includes("larger") ? "too_large" : "bad_request", problem);
    const bytes = await readCapped(c.req.raw, FILE_MAX_BYTES, () => new CattyError("too_large", fileProblem(name, FILE_MAX_BYTES + 1) as string));
    const staged = await saves.stageFile(row, bytes);
    try {
      const file = { name: storedFileName(name, new Date()), url: staged.url, size: bytes.length };
      // The agent's link is on another replica: that one hands the file over.
      const relayReplica = await lifecycle.relayElsewhere(row);
      const path = relayReplica ? await handOnFile(deps, relayReplica, row, file) : await relay.putFile(row.id, file);
      deps.log.info("file handed to a session", { label: row.label, bytes: bytes.length });
      return c.json({ path, size: bytes.length }, 201);
    } finally {
      await staged.drop();
    }
  });

  // `catty forward`: one WebSocket carrying many TCP streams to the session's ports (tunnels.ts).
  app.get("/:label/forward", async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    const id = ForwardId.safeParse(c.req.query("id"));
    if (!id.success) throw new CattyError("bad_request", "A forward needs ?id= (16 to 64 letters, digits, - or _).");
    if (!isLive(row.status)) throw new CattyError("session_ended", `Session ${row.label} has ended; its ports are gone.`, "Start a new one with `catty new`.");
    if (await lifecycle.relayElsewhere(row)) {
      throw new CattyError("unavailable", "This session is relayed by another of the server's replicas, which forwards do not reach yet.", "Try again in a moment.");
    }
    return upgrade(c, tunnelData("client", row, id.data));
  });

  // A preview link from the dashboard: a one-use ticket, exchanged on the preview host for a
  // cookie of that host alone (preview.ts).
  app.get("/:label/preview/:port", async (c) => {
    const { row, port, base } = await previewOf(c.req.param("label"), c.req.param("port"), c.var.user, c.var.origin);
    const { token } = await newGrant(store, "ticket", row, port, TICKET_MS);
    return c.redirect(`${base}__catty/signin?ticket=${token}`, 302);
  });

  // Share links: one port, signed out, until they expire or are revoked.
  app.post("/:label/shares", ...jsonBody(CreateShare), async (c) => {
    const body = c.req.valid("json");
    const { row, port, base } = await previewOf(c.req.param("label"), String(body.port), c.var.user, c.var.origin);
    const { token, grant } = await newGrant(store, "share", row, port, body.expiresInMs ?? 86_400_000);
    deps.log.info("share link made", { label: row.label, port, expiresAt: grant.expiresAt });
    return c.json({ ...shareInfo(grant), url: `${base}__catty/share/${token}` }, 201);
  });
  app.get("/:label/shares", async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    return c.json((await store.listShares(row.id, new Date().toISOString())).map(shareInfo));
  });
  // ?port=: that port's only.
  app.delete("/:label/shares", async (c) => {
    const row = await sessionOf(store, c.var.user, c.req.param("label"));
    const portText = c.req.query("port");
    const port = portText === undefined ? null : Port.safeParse(Number(portText)).data;
    if (port === undefined) throw new CattyError("bad_request", `${JSON.stringify(portText)} is not a port (1 to 65535).`);
    const revoked = await store.revokeShares(row.id, port, new Date().toISOString());
    deps.log.info("share links revoked", { label: row.label, port, revoked });
    return c.json({ revoked });
  });

  /** The user's live session and one of its ports, with the preview host's base URL. */
  const previewOf = async (label: string, portText: string, user: User, origin: string) => {
    const row = await sessionOf(store, user, label);
    const port = Port.safeParse(/^\d{1,5}$/.test(portText) ? Number(portText) : NaN);
    if (!port.success) throw new CattyError("bad_request", `${JSON.stringify(portText)} is not a port (1 to 65535).`);
    if (!isLive(row.status)) throw new CattyError("session_ended", `Session ${row.label} has ended; its ports are gone.`);
    const base = previewUrl(origin, { label: row.label, port: port.data }, deps.previewDomain);
    if (!base) {
      throw new CattyError(
        "conflict",
        "This server has no preview links at this address: they need a wildcard domain.",
        "Set CATTY_PREVIEW_DOMAIN (with a wildcard DNS record and certificate), or use the server at localhost.",
      );
    }
    return { row, port: port.data, base };
  };

  app.get("/:label/attach", async (c) => {
    const ticket = c.req.query("ticket");
    let viewOnly = false;
    let row: SessionRow;
    if (ticket !== undefined) {
      const origin = c.req.header("origin");
      if (origin && origin !== c.var.origin) throw new CattyError("forbidden", "Cross-origin WebSocket refused.");
      const t = await store.takeTicket(hashToken(ticket), new Date().toISOString());
      const found = t ? await store.sessionById(t.sessionId) : null;
      if (!t || !found || found.label !== c.req.param("label") || found.userId !== t.userId) {
        throw new CattyError("unauthorized", "This attach ticket is not valid: each works once, for a minute.", "Ask for a new one.");
      }
      row = found;
      viewOnly = t.viewer;
    } else {
      row = await sessionOf(store, c.var.user, c.req.param("label"));
    }
    // Another replica holds the agent's link: this client's frames go through to it.
    const relayReplica = isLive(row.status) ? await lifecycle.relayElsewhere(row) : null;
    if (relayReplica) {
      deps.log.debug("forwarding a client to the session's relay replica", { label: row.label, replica: relayReplica.id, url: relayReplica.url });
      const path = `/v1/internal/sessions/${row.id}/attach${viewOnly ? "?view=1" : ""}`;
      const target = new URL(path, relayReplica.url);
      target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
      return upgrade(c, {
        kind: "forward",
        sessionId: row.id,
        label: row.label,
        malformed: 0,
        target: target.toString(),
        headers: { [INTERNAL_HEADER]: deps.replicas.sign(relayReplica.id, "GET", path) },
        queued: [],
      });
    }
    return upgradeClient(c, relay, row, viewOnly);
  });

  return app;
}

/** Asks the session's relay replica to hand a staged file to its agent; resolves to the path the program sees. */
async function handOnFile(deps: RouteDeps, to: ReplicaRow, row: SessionRow, file: { name: string; url: string; size: number }): Promise<string> {
  // The staged file's URL may be relative to this server (disk storage): any replica serves it.
  const res = await deps.replicas.call(to, "POST", `/v1/internal/sessions/${row.id}/files`, file, { timeoutMs: 90_000 }).catch(() => null);
  if (!res) throw new CattyError("unavailable", "The replica that relays this session did not answer.", "Try again in a moment.");
  const body = (await res.json().catch(() => null)) as { path?: unknown } | null;
  if (res.ok && typeof body?.path === "string") return body.path;
  const error = ErrorBody.safeParse(body);
  if (error.success) throw CattyError.from(error.data);
  throw new CattyError("unavailable", `The replica that relays this session answered HTTP ${res.status}.`, "Try again in a moment.");
}

/** Checks the request, stores the session and starts its machine. */
async function newSession(deps: RouteDeps, user: User, body: CreateSession & { cols: number; rows: number; command: string[] }): Promise<SessionRow> {
  const { store, provider, timeouts: t } = deps;
  let restoreKey: string | null = null;
  if (body.upload) {
    const upload = await store.takeUpload(user.id, body.upload);
    if (!upload) {
      throw new CattyError("bad_request", `Upload ${body.upload} not found (each upload starts one session).`, "Run `catty new` again.");
    }
    restoreKey = upload.key;
  } else if (body.from) {
    const source = await sessionOf(store, user, body.from);
    const latest = (await store.listSaves(source.id))[0];
    if (!latest) {
      throw new CattyError("not_found", `Session ${source.label} has no save to start from.`, "Run `catty list --json` to see its saves.");
    }
    restoreKey = latest.key;
  }
  if (deps.claudeAccess && !body.ownApiKey) {
    const { quota, total } = await usageReport(store, user.id, usageMonth());
    if (quota !== null && total.tokens >= quota) {
      throw new CattyError(
        "quota_exceeded",
        `Your Claude API quota for ${usageMonth()} is used up: ${total.tokens.toLocaleString("en-US")} of ${quota.toLocaleString("en-US")} tokens.`,
        "Ask the server's operator to raise it (catty-server users set-quota), or bring your own key: catty new --own-api-key.",
      );
    }
  }
  const region = body.region === undefined ? provider.regions[0] : provider.regions.find((r) => r.id === body.region);
  if (!region) {
    const known = provider.regions.map((r) => `${r.name} (${r.id})`).join(", ");
    throw new CattyError(
      "bad_request",
      `This server has no region "${body.region}"; it runs sessions in ${known}.`,
      `Leave the region out for the default, or use one of: ${provider.regions.map((r) => `--region ${r.id}`).join(", ")} (\`catty regions\` lists them).`,
    );
  }
  if (body.durationMs !== undefined && (body.durationMs < t.minDurationMs || body.durationMs > t.maxDurationMs)) {
    throw new CattyError(
      "bad_request",
      `The duration must be between ${formatDuration(t.minDurationMs)} and ${formatDuration(t.maxDurationMs)}.`,
    );
  }
  let label = randomLabel();
  for (let i = 0; (await store.labelTaken(label)) && i < 20; i++) label = randomLabel();
  const agentToken = newToken("agt");
  // One clock reading for both, so the duration a timeout names is the one asked for.
  const now = Date.now();
  const row: SessionRow = {
    id: crypto.randomUUID(),
    label,
    userId: user.id,
    status: "starting",
    region: region.id,
    provider: provider.name,
    command: body.command,
    cols: body.cols,
    rows: body.rows,
    agentTokenHash: hashToken(agentToken),
    machine: null,
    createdAt: new Date(now).toISOString(),
    endedAt: null,
    exitCode: null,
    endReason: null,
    lastScreen: null,
    restoreKey,
    finalSave: null,
    idleTimeoutMs: body.idleTimeoutMs ?? t.idleTimeoutMs,
    expiresAt: body.durationMs ? new Date(now + body.durationMs).toISOString() : null,
    ending: null,
    attention: null,
    relayReplica: null,
    lastActivityAt: null,
  };
  await store.insertSession(row);
  deps.log.debug("session row stored", { label, user: user.name });
  const env = { ...(body.secrets ?? {}), ...(body.ownApiKey ? { ANTHROPIC_API_KEY: body.ownApiKey } : {}) };
  const secrets = Object.keys(env).length > 0 ? env : null;
  return deps.lifecycle.launch(row, { token: agentToken, serverUrl: deps.agentUrl() }, secrets);
}
