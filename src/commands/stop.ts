import { defineCommand } from "citty";
import { resolveContext, type Context } from "../client/context.ts";
import { confirm } from "../client/hidden-input.ts";
import { formatBytes } from "../lib/archive.ts";
import { ui } from "../client/ui.ts";
import { CattyError, isLive } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

/** Stops one live session and says how its final save went; false when that save failed. */
async function stopOne(ctx: Context, label: string): Promise<boolean> {
  ui.start(`Stopping ${label}…`);
  const after = await ctx.client.stop(label);
  ui.success(`Session ${after.label} ${after.status}${after.endReason ? ` (${after.endReason})` : ""}.`);
  const latest = after.saves[0];
  const where = latest ? ` (${formatBytes(latest.size)}, ${latest.files} files); get it with \`catty download ${after.label}\`` : "";
  if (after.finalSave === "stored") ui.success(`Final save stored${where}.`);
  else if (after.finalSave === "unchanged") ui.success(`Nothing changed since the last save${where}.`);
  else if (after.finalSave?.startsWith("failed")) {
    ui.error(`The final save ${after.finalSave}.${latest ? ` The previous save is kept${where}.` : ""}`);
    return false;
  }
  return true;
}

/** `catty stop --all`: every running session, after a confirmation (`--yes` for scripts). */
async function stopAll(ctx: Context, yes: boolean): Promise<number> {
  const live = (await ctx.client.list()).filter((s) => isLive(s.status));
  if (live.length === 0) {
    ui.info("No running sessions.");
    return 0;
  }
  const names = live.map((s) => s.label).join(", ");
  if (!yes) {
    if (!process.stdin.isTTY) {
      throw new CattyError("bad_request", `Not stopping ${live.length} session${live.length === 1 ? "" : "s"} without a confirmation.`, "Add --yes to stop them all from a script.");
    }
    if (!(await confirm(`Stop ${live.length} running session${live.length === 1 ? "" : "s"} (${names})?`, false))) {
      ui.info("Nothing stopped.");
      return 1;
    }
  }
  let failed = 0;
  for (const s of live) {
    try {
      if (!(await stopOne(ctx, s.label))) failed++;
    } catch (err) {
      failed++;
      ui.error(`Could not stop ${s.label}: ${(err as Error).message}`);
    }
  }
  if (failed > 0) ui.warn(`${failed} of ${live.length} did not stop cleanly; see above.`);
  return failed > 0 ? 1 : 0;
}

export default defineCommand({
  meta: { name: "stop", description: "Stop a session (its files stay downloadable); --all stops every running one" },
  args: {
    ...apiArg,
    label: { ...labelArg.label, required: false },
    all: { type: "boolean", default: false, description: "Stop every running session (asks first; --yes does not)" },
    yes: { type: "boolean", alias: "y", default: false, description: "With --all: do not ask" },
  },
  async run({ args }) {
    if (args.all === Boolean(args.label)) {
      throw new CattyError("bad_request", args.all ? "Give a label or --all, not both." : "Which session? Give its label, or --all.", "Run `catty list` to see your sessions.");
    }
    const ctx = await resolveContext(args);
    if (args.all) {
      process.exitCode = await stopAll(ctx, args.yes);
      return;
    }
    const before = await ctx.client.get(args.label as string);
    if (!isLive(before.status)) {
      ui.info(`Session ${before.label} is already ${before.status}.`);
      return;
    }
    if (!(await stopOne(ctx, before.label))) process.exitCode = 1;
  },
});
