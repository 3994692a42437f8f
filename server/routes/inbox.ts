/**
 * The approval inbox's routes (server/inbox.ts):
 *
 * - `POST /v1/anthropic/catty/permission`: Claude Code's `PermissionRequest` hook, from inside the
 *   session, with the session's Claude API token (the one credential its program holds, good for
 *   the proxy and this only). Held open until answered; the answer is the hook's output. Its
 *   `PostToolUse`/`PostToolUseFailure` hooks post here too: a tool that ran was answered.
 * - `GET /v1/inbox`: the user's pending requests.
 * - `POST /v1/sessions/<label>/requests[/<id>]/answer`: allow / deny (with a message) / always.
 * - `POST /v1/sessions/<label>/send`: the next message typed into the program and submitted,
 *   refused while a request waits or the program works.
 * - `POST /v1/act/<token>`: a notification's Allow or Deny, with its one-use action token only.
 * - `GET /v1/sessions/<label>/rules`, `DELETE /v1/sessions/<label>/rules/<id>`: "always allow".
 *
 * Answers need a user (token, or cookie with CSRF) and find only the user's own sessions and
 * requests (404 otherwise). The session's token can only ask.
 */
import { Hono, type Context } from "hono";
import { CattyError, HOOK_BODY_MAX, isLive, PermissionHookInput, RequestAnswer, SendText } from "../../src/protocol/index.ts";
import type { Inbox } from "../inbox.ts";
import { hashToken } from "../tokens.ts";
import { bearer, jsonBody, readCapped, requireUser, sessionOf, type AppEnv, type RouteDeps } from "./common.ts";

/** The hook's route, mounted before the Claude API proxy (which answers 404 to anything not Claude's API). */
export function hookRoutes(deps: Pick<RouteDeps, "store">, inbox: Inbox): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", async (c) => {
    const token = bearer(c.req.header("authorization"));
    const session = token ? await deps.store.sessionByProxyTokenHash(hashToken(token)) : null;
    if (!session || !isLive(session.status)) throw new CattyError("unauthorized", "This session's token is not valid (the session has ended, or the token is not Catty's).");
    const body = await readCapped(c.req.raw, HOOK_BODY_MAX, () => new CattyError("too_large", `The hook's input is larger than ${HOOK_BODY_MAX} bytes.`));
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(body));
    } catch {
      throw new CattyError("bad_request", "The hook's input is not JSON.");
    }
    const input = PermissionHookInput.safeParse(raw);
    if (!input.success) throw new CattyError("bad_request", "The hook's input is not Claude Code's PermissionRequest, PostToolUse or PostToolUseFailure.");
    if (input.data.hook_event_name !== "PermissionRequest") {
      inbox.toolRan(session.id, input.data);
      return c.json({});
    }
    // Held until answered: no idle timeout for this request.
    c.env?.timeout?.(c.req.raw, 0);
    const decision = await inbox.ask({ id: session.id, userId: session.userId, label: session.label }, input.data, c.req.raw.signal);
    if (!decision) return c.json({});
    return c.json({ hookSpecificOutput: { hookEventName: "PermissionRequest", decision } });
  });
  return app;
}

/** The user's side, mounted at `/v1`. */
export function inboxRoutes(deps: Pick<RouteDeps, "store" | "relay">, inbox: Inbox): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const user = requireUser(deps.store);
  const session = (c: { var: AppEnv["Variables"] }, label: string) => sessionOf(deps.store, c.var.user, label);

  app.get("/inbox", user, (c) => c.json(inbox.list(c.var.user.id)));
  // A notification's button: the one-use action token is the whole credential (server/inbox.ts: act).
  app.post("/act/:token", (c) => {
    const token = c.req.param("token");
    if (!/^act_[A-Za-z0-9_-]{43}$/.test(token)) throw new CattyError("not_found", "This answer was used already, or its request was answered or has ended.");
    return c.json(inbox.act(token));
  });
  app.get("/inbox/settled", user, (c) => c.json(inbox.settledOf(c.var.user.id)));

  const answer = async (c: Context<AppEnv>, label: string, id: string | null, body: RequestAnswer): Promise<Response> => {
    const row = await session(c, label);
    return c.json(inbox.answer(c.var.user.id, { id: row.id, userId: row.userId, label: row.label }, id, body));
  };
  app.post("/sessions/:label/requests/answer", user, ...jsonBody(RequestAnswer), (c) => answer(c, c.req.param("label"), null, c.req.valid("json")));
  app.post("/sessions/:label/requests/:id/answer", user, ...jsonBody(RequestAnswer), (c) => {
    const id = c.req.param("id");
    if (!/^[0-9a-f]{12}$/.test(id)) throw new CattyError("not_found", `Request ${id.slice(0, 64)} not found.`, "Run `catty inbox` to see what waits.");
    return answer(c, c.req.param("label"), id, c.req.valid("json"));
  });

  // The next message, typed and submitted as the dashboard's chat mode does, when the program waits at its prompt.
  app.post("/sessions/:label/send", user, ...jsonBody(SendText), async (c) => {
    const row = await session(c, c.req.param("label"));
    if (row.status !== "running") throw new CattyError("conflict", `Session ${row.label} is ${row.status}; messages go only to a running session.`);
    const asking = inbox.waitingIn(row.id);
    if (asking > 0) throw new CattyError("conflict", `${row.label} waits for an answer to ${asking === 1 ? "a request" : `${asking} requests`} first.`, "Run `catty inbox`, then `catty approve` or `catty deny`.");
    const state = row.attention?.state ?? "working";
    if (state === "working") throw new CattyError("conflict", `${row.label} is not at its prompt (it is working).`, "Send when it waits for you (`catty list --watch` says when).");
    if (!deps.relay.typeInput(row.id, new TextEncoder().encode(`${c.req.valid("json").text}\r`))) {
      throw new CattyError("unavailable", `The machine of ${row.label} is not connected to this server right now.`, "Try again in a moment.");
    }
    return c.json({ sent: true });
  });

  app.get("/sessions/:label/rules", user, async (c) => c.json(inbox.listRules((await session(c, c.req.param("label"))).id)));
  app.delete("/sessions/:label/rules/:id", user, async (c) => {
    const row = await session(c, c.req.param("label"));
    if (!inbox.revokeRule(row.id, c.req.param("id"))) throw new CattyError("not_found", "No such rule.", `Run \`catty inbox --rules ${row.label}\` to see them.`);
    return c.json({ revoked: c.req.param("id") });
  });
  return app;
}
