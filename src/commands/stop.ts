import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { formatBytes } from "../lib/archive.ts";
import { ui } from "../client/ui.ts";
import { isLive } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

export default defineCommand({
  meta: { name: "stop", description: "Stop a session (its files stay downloadable)" },
  args: { ...apiArg, ...labelArg },
  async run({ args }) {
    const ctx = await resolveContext(args);
    const before = await ctx.client.get(args.label);
    if (!isLive(before.status)) {
      ui.info(`Session ${before.label} is already ${before.status}.`);
      return;
    }
    ui.start(`Stopping ${before.label}…`);
    const after = await ctx.client.stop(args.label);
    ui.success(`Session ${after.label} ${after.status}${after.endReason ? ` (${after.endReason})` : ""}.`);
    const latest = after.saves[0];
    const where = latest ? ` (${formatBytes(latest.size)}, ${latest.files} files); get it with \`catty download ${after.label}\`` : "";
    if (after.finalSave === "stored") ui.success(`Final save stored${where}.`);
    else if (after.finalSave === "unchanged") ui.success(`Nothing changed since the last save${where}.`);
    else if (after.finalSave?.startsWith("failed")) {
      ui.error(`The final save ${after.finalSave}.${latest ? ` The previous save is kept${where}.` : ""}`);
      process.exitCode = 1;
    }
  },
});
