/**
 * Webhooks for the inbox (`CATTY_NOTIFY_URL`): each new request and each settled one is posted,
 * as a JSON event (`CATTY_NOTIFY_FORMAT=json`) or as an ntfy message with http action buttons
 * for Allow and Deny (`ntfy`), which carry the request's one-use action tokens
 * (`POST /v1/act/<token>`). Delivery never blocks the session: it runs on its own, retried with
 * backoff (1 s, 2 s, 4 s, 8 s) on a network error, a 5xx or a 429, then given up and logged —
 * without the request's content, which is never logged.
 */
import type { Log } from "../src/lib/log.ts";
import type { PendingRequest, SettledHow } from "../src/protocol/index.ts";
import type { ActionTokens, InboxEvents } from "./inbox.ts";

export type NotifyFormat = "json" | "ntfy";

export interface NotifyOptions {
  url: string;
  format: NotifyFormat;
  /** The server's public URL, for the action links and the session's page. */
  publicUrl(): string;
  log: Log;
  /** Delays between tries (tests shorten them). */
  backoffMs?: number[];
  fetch?: typeof fetch;
}

const BACKOFF_MS = [1_000, 2_000, 4_000, 8_000];

/** What a request asks, as a notification's title. */
export function askTitle(r: PendingRequest): string {
  if (r.tool === "Bash") return `${r.label} asks to run a command`;
  if (r.diff || /^(Edit|MultiEdit|Write|NotebookEdit)$/.test(r.tool)) return `${r.label} asks to edit a file`;
  if (r.url) return `${r.label} asks to fetch a URL`;
  return `${r.label} asks to use ${r.tool}`;
}

/** A notification's body: the command, else the file, the URL, the description (cut to 1000 characters). */
export function askBody(r: PendingRequest): string {
  return (r.command || r.path || r.url || r.description || r.tool).slice(0, 1000);
}

export class Notifier implements InboxEvents {
  private readonly backoff: number[];
  private readonly fetch: typeof fetch;

  constructor(private readonly opts: NotifyOptions) {
    this.backoff = opts.backoffMs ?? BACKOFF_MS;
    this.fetch = opts.fetch ?? fetch;
  }

  asked(r: PendingRequest, _userId: string, actions: ActionTokens): void {
    const base = this.opts.publicUrl();
    const act = (token: string): string => `${base}/v1/act/${token}`;
    const page = `${base}/s/${encodeURIComponent(r.label)}`;
    if (this.opts.format === "ntfy") {
      this.deliver("request", {
        body: askBody(r),
        headers: {
          Title: askTitle(r),
          Tags: "question",
          Click: page,
          Actions: `http, Allow, ${act(actions.allow)}, method=POST, clear=true; http, Deny, ${act(actions.deny)}, method=POST, clear=true`,
        },
      });
      return;
    }
    this.deliver("request", {
      body: JSON.stringify({ event: "request", request: r, title: askTitle(r), url: page, actions: { allow: act(actions.allow), deny: act(actions.deny) } }),
      headers: { "Content-Type": "application/json" },
    });
  }

  settled(r: PendingRequest, _userId: string, how: SettledHow): void {
    if (this.opts.format === "ntfy") {
      const said = { allow: "allowed", deny: "denied", terminal: "answered in the terminal", ended: "ended with its session" }[how];
      this.deliver("answer", { body: `${askBody(r)}: ${said}`, headers: { Title: `${r.label}: ${said}`, Tags: "white_check_mark" } });
      return;
    }
    this.deliver("answer", { body: JSON.stringify({ event: "answered", id: r.id, label: r.label, how }), headers: { "Content-Type": "application/json" } });
  }

  private deliver(kind: string, message: { body: string; headers: Record<string, string> }): void {
    void (async () => {
      for (let attempt = 0; ; attempt++) {
        let status = 0;
        try {
          const res = await this.fetch(this.opts.url, { method: "POST", body: message.body, headers: message.headers, signal: AbortSignal.timeout(10_000) });
          await res.body?.cancel().catch(() => {});
          status = res.status;
          if (res.ok) return;
          if (status < 500 && status !== 429) break;
        } catch {
          status = 0;
        }
        const wait = this.backoff[attempt];
        if (wait === undefined) break;
        await Bun.sleep(wait);
      }
      this.opts.log.warn("a notification could not be delivered", { kind, url: new URL(this.opts.url).origin });
    })();
  }
}
