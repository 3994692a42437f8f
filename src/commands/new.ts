import { defineCommand } from "citty";
import { resolveContext } from "../lib/context.ts";
import { uploadDirectory } from "../lib/upload.ts";
import { ui } from "../lib/ui.ts";
import { requireTty } from "../terminal/attach.ts";
import { recordTree } from "../terminal/sync-back.ts";
import { apiArg, commandAfterDashes } from "./_args.ts";
import { attachAndReport } from "./_attach.ts";

export default defineCommand({
  meta: { name: "new", description: "Start a session in the current directory and attach (catty new -- CMD… runs CMD)" },
  args: {
    ...apiArg,
    upload: { type: "boolean", default: true, description: "Upload the current directory (--no-upload starts empty)" },
    git: { type: "boolean", default: true, description: "Include .git in the upload (--no-git leaves it out)" },
    "sync-back": { type: "boolean", default: true, description: "Sync changed files back here (--no-sync-back turns it off)" },
    "auto-reconnect": { type: "boolean", default: true, description: "Reconnect by itself when the link drops" },
  },
  async run({ args, rawArgs }) {
    requireTty();
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    const command = commandAfterDashes(rawArgs);
    const upload = args.upload ? await uploadDirectory(ctx.client, process.cwd(), { includeGit: args.git }) : null;
    const session = await ctx.client.create({
      command,
      ...(upload ? { upload: upload.id } : {}),
      cols: process.stdout.columns || 80,
      rows: process.stdout.rows || 24,
    });
    ui.success(
      `Session ${session.label} started (${session.region}). Detach with Ctrl+C twice; reconnect with \`catty connect ${session.label}\`.`,
    );
    process.exitCode = await attachAndReport(ctx, session.label, {
      mode: "interactive",
      offset: 0,
      autoReconnect: args["auto-reconnect"],
      syncBack: args["sync-back"],
      uploaded: upload && args["sync-back"] ? await recordTree(process.cwd(), args.git) : undefined,
    });
  },
});
