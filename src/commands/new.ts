import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { openSecretStore } from "../client/secrets.ts";
import { CattyError } from "../protocol/errors.ts";
import { parseDuration } from "../lib/duration.ts";
import { cattyHome } from "../lib/paths.ts";
import { uploadDirectory } from "../client/upload.ts";
import { terminalReporter } from "../client/progress.ts";
import { ui } from "../client/ui.ts";
import { requireTty } from "../client/attach.ts";
import { detachHint } from "../client/detach.ts";
import { apiArg, commandAfterDashes } from "./_args.ts";
import { attachAndReport } from "./_attach.ts";

/** The stored secrets that open on this machine; those that do not are named, and left out. */
async function sessionSecrets(home: string): Promise<Record<string, string>> {
  const { values, failed, problem } = await openSecretStore(home).open();
  if (failed.length > 0) {
    const why = problem ? `: ${problem}` : " on this machine";
    ui.warn(`Secret${failed.length === 1 ? "" : "s"} ${failed.join(", ")} cannot be decrypted${why}, and ${failed.length === 1 ? "is" : "are"} left out of the session. Add ${failed.length === 1 ? "it" : "them"} again with \`catty secrets add\`.`);
  }
  return values;
}

export default defineCommand({
  meta: { name: "new", description: "Start a session in the current directory and attach (catty new -- CMD… runs CMD)" },
  args: {
    ...apiArg,
    upload: { type: "boolean", default: true, description: "Upload the current directory (--no-upload starts empty)" },
    git: { type: "boolean", default: true, description: "Include .git in the upload (--no-git leaves it out)" },
    "sync-back": { type: "boolean", default: true, description: "Sync changed files back here (--no-sync-back turns it off)" },
    "auto-reconnect": { type: "boolean", default: true, description: "Reconnect by itself when the link drops" },
    "detach-keys": { type: "string", description: "Keys that detach without reaching the program, e.g. ctrl-p,ctrl-q (CATTY_DETACH_KEYS)" },
    predict: { type: "string", description: "Predictive local echo: auto, always or never (CATTY_PREDICT; default auto)" },
    from: { type: "string", description: "Start from the latest save of session LABEL instead of this directory" },
    "idle-timeout": { type: "string", description: "Stop after this long without input or output (e.g. 30m; server default 2h)" },
    duration: { type: "string", description: "Stop after this long in any case (1h to 8h)" },
    region: { type: "string", description: "Where to run it: one of the server's regions (default: the server's)" },
    secrets: { type: "boolean", default: true, description: "Give the session your secrets (catty secrets; --no-secrets leaves them out)" },
    "own-api-key": { type: "boolean", default: false, description: "Use your own ANTHROPIC_API_KEY (from this shell) instead of the server's Claude API access" },
  },
  async run({ args, rawArgs }) {
    requireTty();
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    const command = commandAfterDashes(rawArgs);
    const idleTimeoutMs = args["idle-timeout"] ? parseDuration(args["idle-timeout"], "--idle-timeout") : undefined;
    const durationMs = args.duration ? parseDuration(args.duration, "--duration") : undefined;
    const from = args.from || undefined;
    const secrets = args.secrets ? await sessionSecrets(ctx.config.home) : {};
    const ownApiKey = args["own-api-key"] ? process.env.ANTHROPIC_API_KEY : undefined;
    if (args["own-api-key"] && !ownApiKey) {
      throw new CattyError("bad_request", "--own-api-key reads ANTHROPIC_API_KEY from this shell, and it is not set.", "export ANTHROPIC_API_KEY=… first.");
    }
    const upload = args.upload && !from ? await uploadDirectory(ctx.client, process.cwd(), { includeGit: args.git, report: terminalReporter(ui.warn), cacheHome: cattyHome() }) : null;
    ui.start(from ? `Starting a session from the latest save of ${from}…` : "Starting the session machine…");
    const session = await ctx.client.create({
      command,
      ...(upload ? { upload: upload.id } : {}),
      ...(from ? { from } : {}),
      ...(idleTimeoutMs ? { idleTimeoutMs } : {}),
      ...(durationMs ? { durationMs } : {}),
      ...(args.region ? { region: args.region } : {}),
      cols: process.stdout.columns || 80,
      rows: process.stdout.rows || 24,
      ...(Object.keys(secrets).length > 0 ? { secrets } : {}),
      ...(ownApiKey ? { ownApiKey } : {}),
    });
    if (!session.isolated) {
      ui.warn(
        `Session ${session.label} is not isolated: its program runs as the server's user, with access to that user's files. ` +
          "To sandbox sessions, install bubblewrap on the server (apt-get install bubblewrap) and restart catty-server.",
      );
    }
    ui.success(
      `Session ${session.label} started (${session.region}). Detach with ${detachHint(ctx.config.detachKeys)}; reconnect with \`catty connect ${session.label}\`.`,
    );
    process.exitCode = await attachAndReport(ctx, session.label, {
      mode: "interactive",
      offset: 0,
      autoReconnect: args["auto-reconnect"],
      syncBack: args["sync-back"],
      uploaded: upload && args["sync-back"] ? upload.sent : undefined,
    });
  },
});
