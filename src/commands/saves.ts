import { defineCommand } from "citty";
import { formatBytes } from "../lib/archive.ts";
import { resolveContext } from "../client/context.ts";
import { ago } from "../client/session-text.ts";
import { ui } from "../client/ui.ts";
import type { SaveInfo } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

/** The saves kept of a session, newest first: when, how many files, how big, what each added. */
export function formatSaves(saves: SaveInfo[], now = Date.now()): string {
  const rows = [["SAVED", "", "FILES", "SIZE", "ADDED", "REASON"]];
  for (const s of saves) {
    const when = new Date(s.createdAt).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
    const added = s.added === null || s.added === undefined ? "-" : formatBytes(s.added);
    rows.push([when, ago(s.createdAt, now), s.files.toLocaleString("en-US"), formatBytes(s.size), added, s.reason]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const right = new Set([2, 3, 4]);
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

export default defineCommand({
  meta: { name: "saves", description: "List the saves kept of a session, newest first (download one with `catty download LABEL --at TIME`)" },
  args: {
    ...apiArg,
    ...labelArg,
    json: { type: "boolean", default: false, description: "Print JSON (an array) and nothing else" },
  },
  async run({ args }) {
    const ctx = await resolveContext(args, () => args.json || ui.start("Starting a local Catty server…"));
    const { saves } = await ctx.client.get(args.label);
    if (args.json) {
      process.stdout.write(`${JSON.stringify(saves, null, 2)}\n`);
      return;
    }
    if (saves.length === 0) {
      ui.info(`Session ${args.label} has no save yet: the first save happens about 10 seconds after it starts.`);
      return;
    }
    process.stdout.write(`${formatSaves(saves)}\n`);
  },
});
