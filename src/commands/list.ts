import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import type { ApiClient } from "../client/api.ts";
import type { Session } from "../protocol/index.ts";
import { apiArg } from "./_args.ts";
import { askText } from "./inbox.ts";
import { canPick, pickAndAct } from "./_pick.ts";
import { ago, portsText, statusText } from "../client/session-text.ts";

export function formatTable(sessions: Session[], now = Date.now()): string {
  // The PORTS column only when a session listens on one.
  const ports = sessions.some((s) => s.ports.length > 0);
  const rows = [["LABEL", "STATUS", "REGION", "CREATED", ...(ports ? ["PORTS"] : [])]];
  for (const s of sessions) rows.push([s.label, statusText(s, now), s.region, ago(s.createdAt, now), ...(ports ? [portsText(s)] : [])]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

/**
 * `catty list --watch`: polls the sessions every 2 s and prints a line, with a bell, each time one
 * starts waiting for its user, and one saying what is asked for each request of the inbox (until Ctrl+C).
 */
async function watchWaiting(client: ApiClient): Promise<void> {
  const seen = new Map<string, string>();
  const asked = new Set<string>();
  ui.info("Watching your sessions; a line (and a bell) each time one starts waiting for you. Ctrl+C to stop.");
  for (;;) {
    for (const s of await client.list()) {
      const waitingSince = s.status === "running" && s.attention?.state === "waiting" ? s.attention.since : null;
      const before = seen.get(s.label);
      if (waitingSince && before !== waitingSince) {
        const time = new Date(waitingSince).toLocaleTimeString("en-GB", { hour12: false });
        process.stdout.write(`\x07${time}  ${s.label} is waiting for you  (catty connect ${s.label})\n`);
      }
      seen.set(s.label, waitingSince ?? "");
    }
    // What is asked, once per request (a server without the inbox answers nothing here).
    for (const r of await client.inbox().catch(() => [])) {
      if (asked.has(r.id)) continue;
      asked.add(r.id);
      const time = new Date(r.createdAt).toLocaleTimeString("en-GB", { hour12: false });
      process.stdout.write(`${time}  ${r.label} ${askText(r)}  (catty approve ${r.label} ${r.id} | catty deny ${r.label} ${r.id})\n`);
    }
    await Bun.sleep(2_000);
  }
}

export default defineCommand({
  meta: { name: "list", description: "List your sessions, newest first (on a terminal: pick one to connect, stop or download)" },
  args: {
    ...apiArg,
    json: { type: "boolean", default: false, description: "Print JSON (an array) and nothing else" },
    plain: { type: "boolean", default: false, description: "Print the table, never the interactive picker" },
    watch: { type: "boolean", default: false, description: "Keep watching: a line (and a bell) each time a session starts waiting for you" },
  },
  async run({ args }) {
    const ctx = await resolveContext(args, () => args.json || ui.start("Starting a local Catty server…"));
    if (args.watch) return watchWaiting(ctx.client);
    // On a terminal: the picker (a pipe, CI, --json or --plain get the table).
    if (!args.json && !args.plain && canPick()) {
      process.exitCode = await pickAndAct(ctx, { syncBack: true, autoReconnect: true });
      return;
    }
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
