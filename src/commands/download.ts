import { defineCommand } from "citty";
import { isAbsolute, relative, resolve } from "node:path";
import { formatBytes } from "../lib/archive.ts";
import { resolveContext, type Context } from "../client/context.ts";
import { abortOnInterrupt, downloadSaveTo, formatCount, savedAgo } from "../client/transfer.ts";
import { terminalReporter } from "../client/progress.ts";
import { ui } from "../client/ui.ts";
import { parseDuration } from "../lib/duration.ts";
import { CattyError, Label } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

export default defineCommand({
  meta: { name: "download", description: "Download a session's latest save (running or stopped), or an earlier one, into a new directory or a .tar.gz" },
  args: {
    ...apiArg,
    ...labelArg,
    path: { type: "positional", required: false, description: "Destination (default ./LABEL, or ./LABEL.tar.gz with --format tar.gz)" },
    format: { type: "enum", options: ["dir", "tar.gz"], default: "dir", description: "dir: extract the files; tar.gz: keep the archive" },
    at: { type: "string", description: "The newest save made at or before TIME: a time (2026-11-29T10:30Z) or how long ago (90m, 2d)" },
  },
  async run({ args }) {
    // The label becomes the default file name: never let it be a path.
    if (!Label.safeParse(args.label).success) {
      throw new CattyError("bad_request", `${JSON.stringify(args.label)} is not a session label.`, "Run `catty list` to see your sessions.");
    }
    const format = args.format === "tar.gz" ? "tar.gz" : "dir";
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    process.exitCode = await downloadLatest(ctx, args.label, args.path, format, args.at === undefined ? undefined : parseAt(args.at));
  },
});

/** Downloads the latest save of `label` to `path` (default ./LABEL or ./LABEL.tar.gz) and says how it went; the exit code. */
export async function downloadLatest(ctx: Context, label: string, path: string | undefined, format: "dir" | "tar.gz", at?: string): Promise<number> {
  const dest = resolve(path ?? (format === "dir" ? label : `${label}.tar.gz`));
  using interrupt = abortOnInterrupt();
  try {
    const got = await downloadSaveTo({ client: ctx.client, label, dest, format, signal: interrupt.signal, report: terminalReporter(ui.warn), ...(at ? { at } : {}) });
    const what = `${formatBytes(got.bytes)}, ${formatCount(got.files, "file")}`;
    ui.success(`Downloaded the save of ${label} from ${savedAgo(got.save.createdAt)} to ${shown(dest)}: ${what}.`);
    return 0;
  } catch (err) {
    if (!interrupt.signal.aborted) throw err;
    ui.warn("Interrupted; nothing was written.");
    return 130;
  }
}

/** `--at`: an ISO time, or a duration meaning that long ago; as an ISO time. */
export function parseAt(text: string, now = Date.now()): string {
  if (/^\d+(\.\d+)?(ms|s|m|h|d)/.test(text.trim())) return new Date(now - parseDuration(text, "--at")).toISOString();
  const t = Date.parse(text);
  if (Number.isNaN(t)) {
    throw new CattyError("bad_request", `--at "${text}" is neither a time nor a duration.`, "Use a time such as 2026-11-29T10:30:00Z, or how long ago, such as 90m or 2d.");
  }
  return new Date(t).toISOString();
}

/** `./name` for paths under the current directory, the absolute path otherwise. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === "" || rel === ".." || rel.startsWith("../") || isAbsolute(rel) ? path : `./${rel}`;
}
