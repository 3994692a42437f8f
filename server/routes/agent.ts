/**
 * `/v1/agent/connect`: the WebSocket a session's agent dials, authenticated with the session's
 * agent token. The agent of a session that has ended is told so when the link opens. And
 * `/v1/agent/forward?id=`: the link an agent dials for one port forward when the server asks.
 */
import { Hono } from "hono";
import { CattyError, ForwardId, isLive } from "../../src/protocol/index.ts";
import { hashToken } from "../tokens.ts";
import { bearer, upgrade, type AppEnv, type RouteDeps } from "./common.ts";
import { tunnelData } from "../tunnels.ts";

export function agentRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/connect", async (c) => {
    const token = bearer(c.req.header("authorization"));
    const row = token ? await deps.store.sessionByAgentTokenHash(hashToken(token)) : null;
    if (!row) throw new CattyError("unauthorized", "Invalid agent token.");
    return upgrade(c, { kind: "agent", sessionId: row.id, label: row.label, malformed: 0, ended: !isLive(row.status) });
  });
  // The link the agent dials for one forward when the server asks (tunnels.ts).
  app.get("/forward", async (c) => {
    const token = bearer(c.req.header("authorization"));
    const row = token ? await deps.store.sessionByAgentTokenHash(hashToken(token)) : null;
    if (!row) throw new CattyError("unauthorized", "Invalid agent token.");
    const id = ForwardId.safeParse(c.req.query("id"));
    if (!id.success) throw new CattyError("bad_request", "A forward needs ?id=.");
    if (!isLive(row.status)) throw new CattyError("session_ended", "The session has ended.");
    return upgrade(c, tunnelData("agent", row, id.data));
  });
  return app;
}
