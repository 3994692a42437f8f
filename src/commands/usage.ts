/**
 * `catty usage`: this month's Claude API usage through the server — in all, against the quota,
 * and per session (`--json` for scripts, `--month YYYY-MM` for another month).
 */
import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import type { UsageReport } from "../protocol/index.ts";
import { apiArg } from "./_args.ts";

const n = (v: number): string => v.toLocaleString("en-US");

export function formatUsage(r: UsageReport): string {
  const lines = [`Claude API usage in ${r.month}: ${n(r.total.tokens)} tokens in ${n(r.total.requests)} requests${r.quota === null ? " (no limit)" : ` of ${n(r.quota)} (${Math.min(100, Math.round((r.total.tokens / Math.max(1, r.quota)) * 100))}%)`}`];
  if (r.sessions.length === 0) return lines.join("\n");
  const rows = [["SESSION", "REQUESTS", "INPUT", "OUTPUT", "CACHE WRITE", "CACHE READ", "TOKENS"]];
  for (const s of r.sessions) rows.push([s.label, n(s.requests), n(s.input), n(s.output), n(s.cacheCreation), n(s.cacheRead), n(s.tokens)]);
  const t = r.total;
  rows.push(["total", n(t.requests), n(t.input), n(t.output), n(t.cacheCreation), n(t.cacheRead), n(t.tokens)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  lines.push("", ...rows.map((row) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")));
  return lines.join("\n");
}

export default defineCommand({
  meta: { name: "usage", description: "Claude API usage through the server this month, per session" },
  args: {
    ...apiArg,
    json: { type: "boolean", default: false, description: "Print JSON and nothing else" },
    month: { type: "string", description: "Another month (YYYY-MM)" },
  },
  async run({ args }) {
    const ctx = await resolveContext(args, () => args.json || ui.start("Starting a local Catty server…"));
    const report = await ctx.client.usage(args.month || undefined);
    process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatUsage(report)}\n`);
  },
});
