import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import { requireTty } from "../client/attach.ts";
import { apiArg, labelArg } from "./_args.ts";
import { attachAndReport } from "./_attach.ts";

export default defineCommand({
  meta: { name: "connect", description: "Attach to a running session" },
  args: {
    ...apiArg,
    ...labelArg,
    view: { type: "boolean", default: false, description: "Watch read-only, alongside the interactive client" },
    "sync-back": { type: "boolean", default: true, description: "Sync changed files back here (--no-sync-back turns it off)" },
    "auto-reconnect": { type: "boolean", default: true, description: "Reconnect by itself when the link drops" },
  },
  async run({ args }) {
    requireTty();
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    const session = await ctx.client.get(args.label);
    process.exitCode = await attachAndReport(ctx, session.label, {
      mode: args.view ? "view" : "interactive",
      offset: null,
      autoReconnect: args["auto-reconnect"],
      syncBack: args["sync-back"],
    });
  },
});
