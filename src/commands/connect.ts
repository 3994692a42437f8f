import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import { requireTty } from "../client/attach.ts";
import { apiArg, labelArg } from "./_args.ts";
import { canPick, pickAndAct } from "./_pick.ts";
import { CattyError } from "../protocol/index.ts";
import { attachAndReport } from "./_attach.ts";

export default defineCommand({
  meta: { name: "connect", description: "Attach to a running session (no label: pick one)" },
  args: {
    ...apiArg,
    label: { ...labelArg.label, required: false, description: "Session label, e.g. brave-tiger-1234 (none: pick one)" },
    view: { type: "boolean", default: false, description: "Watch read-only, alongside the interactive client" },
    "sync-back": { type: "boolean", default: true, description: "Sync changed files back here (--no-sync-back turns it off)" },
    "auto-reconnect": { type: "boolean", default: true, description: "Reconnect by itself when the link drops" },
    "detach-keys": { type: "string", description: "Keys that detach without reaching the program, e.g. ctrl-p,ctrl-q (CATTY_DETACH_KEYS)" },
    predict: { type: "string", description: "Predictive local echo: auto, always or never (CATTY_PREDICT; default auto)" },
  },
  async run({ args }) {
    requireTty();
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    if (!args.label) {
      if (!canPick()) throw new CattyError("bad_request", "Which session? Give its label: catty connect LABEL.", "Run `catty list` to see your sessions.");
      process.exitCode = await pickAndAct(ctx, { syncBack: args["sync-back"], autoReconnect: args["auto-reconnect"] });
      return;
    }
    const session = await ctx.client.get(args.label);
    process.exitCode = await attachAndReport(ctx, session.label, {
      mode: args.view ? "view" : "interactive",
      offset: null,
      autoReconnect: args["auto-reconnect"],
      syncBack: args["sync-back"],
    });
  },
});
