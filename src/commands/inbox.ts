/**
 * `catty inbox`: every request Claude Code waits on across the user's sessions — session, ID,
 * tool, what it would do, age. On a terminal an Ink list with keys to answer (src/tui/inbox);
 * otherwise a table (or `--json`); `catty approve` / `catty deny` answer.
 */
import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ago } from "../lib/format.ts";
import type { PendingRequest } from "../protocol/index.ts";
import { apiArg } from "./_args.ts";
import { attachAndReport } from "./_attach.ts";
import { canPick } from "./_pick.ts";

/** What a request would do, on one line. */
export function requestSummary(r: PendingRequest): string {
  const what = r.command || (r.path ? `${r.path}` : "") || r.url || r.description || r.tool;
  return what.replace(/\s+/g, " ").slice(0, 200);
}

/** What a request asks, as a phrase: "asks to run: npm test", "asks to edit src/a.ts". */
export function askText(r: PendingRequest): string {
  if (r.tool === "Bash") return `asks to run: ${requestSummary(r)}`;
  if (r.path && /^(Edit|MultiEdit|Write|NotebookEdit)$/.test(r.tool)) return `asks to edit ${r.path}`;
  if (r.url) return `asks to fetch ${r.url.slice(0, 200)}`;
  return `asks to use ${r.tool}: ${requestSummary(r)}`;
}

export function formatInbox(requests: PendingRequest[], now = Date.now()): string {
  if (requests.length === 0) return "Nothing waits for an answer.";
  const rows = [["SESSION", "ID", "TOOL", "AGE", "WHAT"], ...requests.map((r) => [r.label, r.id, r.tool, ago(r.createdAt, now), requestSummary(r)])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

export default defineCommand({
  meta: { name: "inbox", description: "What Claude Code asks, across your sessions (answer with catty approve / deny)" },
  args: {
    ...apiArg,
    json: { type: "boolean", default: false, description: "Print JSON and nothing else" },
    plain: { type: "boolean", default: false, description: "Print the table, never the interactive list" },
  },
  async run({ args }) {
    const ctx = await resolveContext(args);
    const requests = await ctx.client.inbox();
    if (!args.json && !args.plain && canPick()) {
      const { runInboxList } = await import("../tui/inbox/InboxList.tsx");
      const chosen = await runInboxList(
        {
          load: () => ctx.client.inbox(),
          answer: async (r, a) => {
            const done = await ctx.client.answer(r.label, r.id, a);
            return `${done.behavior === "allow" ? "Allowed" : "Denied"} ${r.label}'s ${r.tool}${done.rule ? ` (from now on: ${done.rule.prefix ?? `every ${done.rule.tool}`})` : ""}.`;
          },
        },
        requests,
      );
      if (chosen.interrupted) process.exitCode = 130;
      if (chosen.open) process.exitCode = await attachAndReport(ctx, chosen.open, { mode: "interactive", offset: null, autoReconnect: true, syncBack: false });
      return;
    }
    process.stdout.write(args.json ? `${JSON.stringify(requests, null, 2)}\n` : `${formatInbox(requests)}\n`);
  },
});
