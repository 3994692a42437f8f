/**
 * The approval inbox: Claude Code's permission requests, held until their user answers.
 *
 * The session's `PermissionRequest` hook posts its input here (`routes/inbox.ts`) and its HTTP
 * request stays open: the answer is its response (`allow`, or `deny` with a message), which the
 * hook prints as its decision. Claude Code shows its own dialog meanwhile; when the user answers
 * there first, Claude Code kills the hook, the request's connection closes, and the request is
 * settled as "answered in the terminal" (README: "Answering Claude Code from anywhere"). So the
 * first answer wins, once: an answer from outside settles the request before it is sent to the
 * hook, and whatever comes later is told how it was answered.
 *
 * What is kept of a request (command, diff, URL) lives only here, in memory of the replica that
 * holds the hook's connection, until it is answered; never in logs. A settled request is remembered
 * (without its content) for `SETTLED_KEEP_MS`, to tell a late answer what happened.
 */
import { randomBytes } from "node:crypto";
import { hashToken, newToken } from "./tokens.ts";
import { CattyError, REQUEST_TEXT_MAX, type AllowRule, type AnswerResult, type PendingRequest, type PermissionHookInput, type RequestAnswer, type SettledHow, type SettledRequests } from "../src/protocol/index.ts";

/** How long a settled request is remembered, to answer a late answer. */
export const SETTLED_KEEP_MS = 10 * 60 * 1000;
/** Pending requests one session may have at once (Claude Code asks one at a time per agent). */
const MAX_PENDING_PER_SESSION = 32;
/** Answers one user may send per `RATE_WINDOW_MS`. */
const RATE_ANSWERS = 60;
const RATE_WINDOW_MS = 60_000;

/** The hook's decision, as Claude Code reads it from a `PermissionRequest` hook's output. */
export type HookDecision = { behavior: "allow" } | { behavior: "deny"; message: string };

type Settled = { userId: string; sessionId: string; how: SettledHow; at: number };

interface Pending {
  request: PendingRequest;
  userId: string;
  sessionId: string;
  /** Sends the hook its answer; null: none (the terminal answered). */
  decide(d: HookDecision | null): void;
}

/** What an action token may do: this one answer to this one request of this user's session. */
interface ActionScope {
  userId: string;
  session: InboxSession;
  requestId: string;
  behavior: "allow" | "deny";
}

/** One-use answers for a notification's buttons (random, kept hashed, gone with their request). */
export interface ActionTokens {
  allow: string;
  deny: string;
}

/** What the inbox tells the notifiers (server/notify.ts). */
export interface InboxEvents {
  asked(request: PendingRequest, userId: string, actions: ActionTokens): void;
  settled(request: PendingRequest, userId: string, how: SettledHow): void;
}

export interface InboxSession {
  id: string;
  userId: string;
  label: string;
}

const cut = (s: string): { text: string; cut: boolean } => {
  const bytes = Buffer.from(s);
  if (bytes.length <= REQUEST_TEXT_MAX) return { text: s, cut: false };
  // Cut on a character boundary.
  return { text: new TextDecoder().decode(bytes.subarray(0, REQUEST_TEXT_MAX)).replace(/\uFFFD$/, ""), cut: true };
};

const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** A unified diff of `before` → `after` for `path`, line by line (no context matching: the whole strings). */
function wholeDiff(path: string, before: string, after: string): string {
  const lines = (s: string, sign: string): string[] => (s === "" ? [] : s.replace(/\n$/, "").split("\n").map((l) => `${sign}${l}`));
  const old = lines(before, "-");
  const neu = lines(after, "+");
  return [`--- a/${path}`, `+++ b/${path}`, `@@ -1,${old.length} +1,${neu.length} @@`, ...old, ...neu].join("\n");
}

/** What the user sees of a tool use: the command, the file and its diff, the URL, the description. */
export function describeToolUse(input: PermissionHookInput): Omit<PendingRequest, "id" | "label" | "createdAt"> {
  const t = input.tool_input;
  let command = "";
  let path = str(t.file_path) || str(t.notebook_path) || str(t.path);
  let diff = "";
  const url = str(t.url);
  const description = str(t.description) || str(t.prompt);
  switch (input.tool_name) {
    case "Bash":
      command = str(t.command);
      path = "";
      break;
    case "Edit":
      diff = wholeDiff(path, str(t.old_string), str(t.new_string));
      break;
    case "MultiEdit":
      diff = (Array.isArray(t.edits) ? t.edits : [])
        .map((e) => wholeDiff(path, str((e as Record<string, unknown>)?.old_string), str((e as Record<string, unknown>)?.new_string)))
        .join("\n");
      break;
    case "Write":
      diff = wholeDiff(path, "", str(t.content));
      break;
  }
  const parts = [cut(command), cut(diff), cut(description)];
  return {
    tool: input.tool_name,
    command: parts[0]!.text,
    path: path.slice(0, 4096),
    diff: parts[1]!.text,
    url: url.slice(0, 4096),
    description: parts[2]!.text.slice(0, 4096),
    truncated: parts.some((p) => p.cut) || description.length > 4096,
  };
}

/** Shell syntax that joins, substitutes or redirects: a command with any is allowed by an exact rule only. */
const SHELL_SYNTAX = /[;&|`$()<>\n\r\\]/;

/** The rule "always allow" makes for a request: a Bash command's first word (the whole command when it has shell syntax), else the tool. */
export function ruleFor(request: Pick<PendingRequest, "tool" | "command">): { tool: string; prefix: string | null } {
  if (request.tool !== "Bash") return { tool: request.tool, prefix: null };
  const command = request.command.trim();
  if (SHELL_SYNTAX.test(command)) return { tool: "Bash", prefix: command };
  return { tool: "Bash", prefix: command.split(/\s+/)[0] ?? command };
}

/** Whether `rule` allows this tool use. A Bash prefix matches the command itself, or it followed by arguments without shell syntax. */
export function ruleAllows(rule: Pick<AllowRule, "tool" | "prefix">, request: Pick<PendingRequest, "tool" | "command">): boolean {
  if (rule.tool !== request.tool) return false;
  if (rule.prefix === null) return true;
  const command = request.command.trim();
  if (command === rule.prefix) return true;
  return !SHELL_SYNTAX.test(command) && command.startsWith(`${rule.prefix} `);
}

const newId = (): string => randomBytes(6).toString("hex");

export class Inbox {
  private readonly pending = new Map<string, Pending>();
  private readonly settled = new Map<string, Settled>();
  private readonly rules = new Map<string, AllowRule[]>();
  private readonly rate = new Map<string, { start: number; count: number }>();
  /** Action tokens by their hash. */
  private readonly actions = new Map<string, ActionScope>();
  private sweep: Timer | undefined;
  events: InboxEvents | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  /** Starts forgetting what has expired, every minute (built, the inbox starts no timer). */
  start(): void {
    if (this.sweep) return;
    this.sweep = setInterval(() => this.forget(), 60_000);
    this.sweep.unref?.();
  }

  close(): void {
    clearInterval(this.sweep);
    this.sweep = undefined;
  }

  /**
   * A hook's request from `session`: allowed at once by one of its rules, else held until an
   * answer (resolves to it) or until `aborted` (the terminal answered: resolves to null).
   */
  async ask(session: InboxSession, input: PermissionHookInput, aborted: AbortSignal): Promise<HookDecision | null> {
    const seen = describeToolUse(input);
    if ((this.rules.get(session.id) ?? []).some((r) => ruleAllows(r, seen))) return { behavior: "allow" };
    if (this.forSession(session.id).length >= MAX_PENDING_PER_SESSION) {
      throw new CattyError("too_many_requests", `Session ${session.label} already has ${MAX_PENDING_PER_SESSION} requests waiting.`, "Answer them in the terminal.");
    }
    const request: PendingRequest = { ...seen, id: newId(), label: session.label, createdAt: new Date(this.now()).toISOString() };
    return new Promise<HookDecision | null>((resolve) => {
      // Answering "No" in the terminal interrupts Claude Code, which ends its hooks.
      const onAbort = (): void => {
        if (!this.pending.has(request.id)) return;
        this.settle(request.id, "terminal");
        resolve(null);
      };
      this.pending.set(request.id, {
        request,
        userId: session.userId,
        sessionId: session.id,
        decide: (d) => {
          aborted.removeEventListener("abort", onAbort);
          resolve(d);
        },
      });
      if (aborted.aborted) onAbort();
      else {
        aborted.addEventListener("abort", onAbort, { once: true });
        if (this.events) this.events.asked(request, session.userId, this.issueActions(session, request.id));
      }
    });
  }

  /**
   * A tool of `session` ran (Claude Code's `PostToolUse` and `PostToolUseFailure` hooks): a request
   * for that very use was answered in the terminal ("Yes" there leaves the permission hook
   * running), so it is settled and its hook told nothing more.
   */
  toolRan(sessionId: string, input: PermissionHookInput): void {
    const ran = describeToolUse(input);
    for (const p of this.forSession(sessionId)) {
      const r = p.request;
      if (r.tool !== ran.tool || r.command !== ran.command || r.path !== ran.path || r.diff !== ran.diff || r.url !== ran.url) continue;
      this.settle(r.id, "terminal");
      p.decide(null);
    }
  }

  /** The user's requests settled in the last `SETTLED_KEEP_MS`, and how. */
  settledOf(userId: string): SettledRequests {
    return [...this.settled].filter(([, s]) => s.userId === userId).map(([id, s]) => ({ id, how: s.how }));
  }

  /** How many requests of the session wait. */
  waitingIn(sessionId: string): number {
    return this.forSession(sessionId).length;
  }

  /** The user's pending requests, oldest first. */
  list(userId: string): PendingRequest[] {
    return [...this.pending.values()].filter((p) => p.userId === userId).map((p) => p.request).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** How many requests wait (the server's own figure, for metrics and the benchmark). */
  get size(): number {
    return this.pending.size;
  }

  /**
   * Answers the request `id` of `session` (or its only pending one when `id` is null). Another
   * user's request is not found; one already settled is a conflict saying how.
   */
  answer(userId: string, session: InboxSession, id: string | null, answer: RequestAnswer): AnswerResult {
    this.limit(userId);
    let entry: Pending | undefined;
    if (id === null) {
      const waiting = [...this.pending.values()].filter((p) => p.sessionId === session.id);
      if (waiting.length === 0) throw new CattyError("not_found", `Nothing of ${session.label} waits for an answer.`, "Run `catty inbox` to see what waits.");
      if (waiting.length > 1) throw new CattyError("bad_request", `${session.label} has ${waiting.length} requests waiting; say which.`, `Run \`catty inbox\` and give the request's ID.`);
      entry = waiting[0];
    } else {
      entry = this.pending.get(id);
      if (!entry || entry.userId !== userId || entry.sessionId !== session.id) {
        const done = this.settled.get(id);
        if (done && done.userId === userId && done.sessionId === session.id) throw stale(done.how);
        throw new CattyError("not_found", `Request ${id} of ${session.label} not found.`, "Run `catty inbox` to see what waits.");
      }
    }
    const request = (entry as Pending).request;
    this.settle(request.id, answer.behavior);
    let rule: AllowRule | null = null;
    if (answer.behavior === "allow" && answer.always) {
      rule = { id: newId(), ...ruleFor(request), createdAt: new Date(this.now()).toISOString() };
      this.rules.set(session.id, [...(this.rules.get(session.id) ?? []), rule]);
    }
    (entry as Pending).decide(
      answer.behavior === "allow" ? { behavior: "allow" } : { behavior: "deny", message: answer.message?.trim() || "The user denied this from outside the terminal." },
    );
    return { answered: true, id: request.id, behavior: answer.behavior, rule };
  }

  /**
   * Answers with an action token (a notification's button, no other credential): its scope — one
   * user, session, request and answer — is the whole of what it can do, once, while the request
   * waits. This is the one place that scope is checked.
   */
  act(token: string): AnswerResult {
    const hash = hashToken(token);
    const scope = this.actions.get(hash);
    if (!scope) throw new CattyError("not_found", "This answer was used already, or its request was answered or has ended.", "Open the dashboard to see what waits.");
    this.actions.delete(hash);
    const p = this.pending.get(scope.requestId);
    if (!p || p.userId !== scope.userId || p.sessionId !== scope.session.id) {
      throw new CattyError("not_found", "This answer was used already, or its request was answered or has ended.", "Open the dashboard to see what waits.");
    }
    return this.answer(scope.userId, scope.session, scope.requestId, { behavior: scope.behavior });
  }

  private issueActions(session: InboxSession, requestId: string): ActionTokens {
    const make = (behavior: "allow" | "deny"): string => {
      const token = newToken("act");
      this.actions.set(hashToken(token), { userId: session.userId, session, requestId, behavior });
      return token;
    };
    return { allow: make("allow"), deny: make("deny") };
  }

  /** A session's "always allow" rules. */
  listRules(sessionId: string): AllowRule[] {
    return [...(this.rules.get(sessionId) ?? [])];
  }

  /** Revokes one rule; false when the session has no such rule. */
  revokeRule(sessionId: string, ruleId: string): boolean {
    const rules = this.rules.get(sessionId) ?? [];
    const left = rules.filter((r) => r.id !== ruleId);
    if (left.length === rules.length) return false;
    this.rules.set(sessionId, left);
    return true;
  }

  /** The session ended: its requests are dropped (their hooks ended with it) and its rules forgotten. */
  sessionEnded(sessionId: string): void {
    for (const [id, p] of this.pending) {
      if (p.sessionId !== sessionId) continue;
      this.settle(id, "ended");
      p.decide({ behavior: "deny", message: "The session ended." });
    }
    this.rules.delete(sessionId);
  }

  private forSession(sessionId: string): Pending[] {
    return [...this.pending.values()].filter((p) => p.sessionId === sessionId);
  }

  private settle(id: string, how: Settled["how"]): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.settled.set(id, { userId: p.userId, sessionId: p.sessionId, how, at: this.now() });
    // Its action tokens expire with it.
    for (const [hash, scope] of this.actions) if (scope.requestId === id) this.actions.delete(hash);
    this.events?.settled(p.request, p.userId, how);
  }

  private limit(userId: string): void {
    const now = this.now();
    const r = this.rate.get(userId);
    if (!r || now - r.start > RATE_WINDOW_MS) {
      this.rate.set(userId, { start: now, count: 1 });
      return;
    }
    if (++r.count > RATE_ANSWERS) throw new CattyError("too_many_requests", "Too many answers in a minute.", "Wait a minute and answer again.");
  }

  private forget(): void {
    const now = this.now();
    for (const [id, s] of this.settled) if (now - s.at > SETTLED_KEEP_MS) this.settled.delete(id);
    for (const [user, r] of this.rate) if (now - r.start > RATE_WINDOW_MS) this.rate.delete(user);
  }
}

function stale(how: Settled["how"]): CattyError {
  switch (how) {
    case "terminal":
      return new CattyError("conflict", "Already answered in the terminal.");
    case "ended":
      return new CattyError("conflict", "The session ended before an answer.");
    default:
      return new CattyError("conflict", `Already answered (${how === "allow" ? "allowed" : "denied"}).`);
  }
}
