/**
 * `/v1/agent/connect`: the WebSocket a session's agent dials, authenticated with the session's
 * agent token. The agent of a session that has ended is told so when the link opens.
 */
import { Hono } from "hono";
import { CattyError, isLive } from "../../src/protocol/index.ts";
import { hashToken } from "../tokens.ts";
import { bearer, upgrade, type AppEnv, type RouteDeps } from "./common.ts";

export function agentRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get("/connect", async (c) => {
    const token = bearer(c.req.header("authorization"));
    const row = token ? await deps.store.sessionByAgentTokenHash(hashToken(token)) : null;
    if (!row) throw new CattyError("unauthorized", "Invalid agent token.");
    return upgrade(c, { kind: "agent", sessionId: row.id, label: row.label, malformed: 0, ended: !isLive(row.status) });
  });
  return app;
}
