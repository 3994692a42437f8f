/**
 * `catty`: the command line. Parses the command, runs it, and turns errors into a message, a hint
 * and an exit code (0 ok, 1 error, 2 a mistyped command or flag, 130 interrupted, else the program's own code).
 */
import { defineCommand, renderUsage, runCommand, type CommandDef } from "citty";
import { CattyError } from "./protocol/errors.ts";
import { readCliConfig } from "./client/config.ts";
import { createLog } from "./lib/log.ts";
import { ui } from "./client/ui.ts";
import { VERSION } from "./lib/version.ts";
import { COMMANDS } from "./commands/index.ts";
import { join } from "node:path";
import { confirm } from "./client/hidden-input.ts";
import { installKind, latestVersion, offerUpdate, UpdateCheckState, updateSettings } from "./client/update.ts";
import { updateTo } from "./commands/update.ts";
import { inCi } from "./client/ci.ts";
import { checkCommandLine } from "./lib/command-line.ts";

const main = defineCommand({
  meta: { name: "catty", version: VERSION, description: "Persistent remote sessions for Claude Code and any terminal program" },
  subCommands: COMMANDS,
});

/** `catty --api URL list` → `catty list --api URL`: the global flag may come before the command. */
function hoistGlobalFlags(argv: string[]): string[] {
  const out = [...argv];
  const lead: string[] = [];
  while (out[0]?.startsWith("--api")) {
    const flag = out.shift() as string;
    lead.push(flag);
    if (!flag.includes("=") && out[0] !== undefined) lead.push(out.shift() as string);
  }
  if (lead.length === 0 || out.length === 0) return argv;
  const [sub, ...rest] = out;
  return [sub as string, ...lead, ...rest];
}

async function run(input: string[]): Promise<number> {
  const config = readCliConfig({});
  if (config.quiet) ui.level = 1;
  const argv = hoistGlobalFlags(input);
  const dashes = argv.indexOf("--");
  const own = dashes === -1 ? argv : argv.slice(0, dashes);
  if (own.length === 1 && (own[0] === "--version" || own[0] === "-v" || own[0] === "version")) {
    console.log(VERSION);
    return 0;
  }
  if (own.length === 0 || own.includes("--help") || own.includes("-h")) {
    const sub = own.find((a) => !a.startsWith("-"));
    const subs = main.subCommands as Record<string, () => Promise<CommandDef<any>>>;
    const loader = sub ? subs[sub] : undefined;
    printUsage(loader ? await renderUsage(await loader(), main) : await renderUsage(main));
    return own.length === 0 ? 1 : 0;
  }
  const sub = own[0] as string;
  // A mistyped command or flag is a usage error (exit code 2), not something to ignore.
  const wrong = await checkCommandLine(main, argv, "catty");
  if (wrong) {
    ui.error(wrong);
    return 2;
  }
  await runCommand(main, { rawArgs: argv });
  if (!NO_UPDATE_CHECK.has(sub) && config.updateCheck) await offerAnUpdate(config.home);
  return typeof process.exitCode === "number" ? process.exitCode : 0;
}

/** The usage text, in colour only on a terminal and when `NO_COLOR` is not set (`catty --help | less`). */
function printUsage(text: string): void {
  const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
  process.stdout.write(`${colour ? text : Bun.stripANSI(text)}\n`);
}

/** Commands after which catty does not look for a newer version. */
const NO_UPDATE_CHECK = new Set(["version", "update", "completion"]);

/** On a terminal, at most every 15 min: "Update available: A → B. Update now? (Y/n)". */
async function offerAnUpdate(home: string): Promise<void> {
  if (!process.stdin.isTTY || !process.stderr.isTTY || inCi()) return;
  if (installKind().kind === "dev") return;
  const state = new UpdateCheckState(join(home, "update-check.json"));
  const latest = await offerUpdate(state, () => latestVersion(updateSettings()), VERSION);
  if (!latest) return;
  if (await confirm(`Update available: ${VERSION} → ${latest}. Update now?`, true)) {
    process.exitCode = await updateTo(latest);
  } else {
    state.write({ ...state.read(), declined: { version: latest, at: Date.now() } });
    ui.info(`Not now; \`catty update\` updates any time. Not asking about ${latest} again for 2 days.`);
  }
}

let code: number;
try {
  code = await run(process.argv.slice(2));
} catch (err) {
  let config: ReturnType<typeof readCliConfig> | null = null;
  try {
    config = readCliConfig({});
  } catch {
    // a bad setting is the error being reported
  }
  const log = config ? createLog({ scope: "cli", file: config.logFile, level: config.logLevel }) : null;
  log?.error("command failed", { err });
  if (err instanceof CattyError && err.code === "quota_exceeded") {
    ui.box({ title: "Claude API quota reached", message: `${err.message}${err.hint ? `\n\n${err.hint}` : ""}` });
  } else if (err instanceof CattyError) {
    ui.error(err.message);
    if (err.hint) ui.info(err.hint);
  } else {
    ui.error((err as Error).message ?? String(err));
  }
  code = 1;
}
process.exit(code);
