import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import type { Session } from "../protocol/index.ts";
import { apiArg } from "./_args.ts";

export function formatTable(sessions: Session[], now = Date.now()): string {
  const rows = [["LABEL", "STATUS", "REGION", "CREATED"]];
  for (const s of sessions) rows.push([s.label, s.status, s.region, ago(s.createdAt, now)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

function ago(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

export default defineCommand({
  meta: { name: "list", description: "List your sessions, newest first" },
  args: { ...apiArg, json: { type: "boolean", default: false, description: "Print JSON (an array) and nothing else" } },
  async run({ args }) {
    const ctx = await resolveContext(args, () => args.json || ui.start("Starting a local Catty server…"));
    const sessions = await ctx.client.list();
    if (args.json) {
      process.stdout.write(`${JSON.stringify(sessions, null, 2)}\n`);
      return;
    }
    if (sessions.length === 0) {
      ui.info("No sessions yet. Start one with `catty new`.");
      return;
    }
    process.stdout.write(`${formatTable(sessions)}\n`);
  },
});
