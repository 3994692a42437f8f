import { defineCommand } from "citty";
import { mkdtemp, rm } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join, parse, resolve } from "node:path";
import { extractArchive } from "../lib/archive.ts";
import { resolveContext } from "../client/context.ts";
import { applySync, formatPlan, isEmptyPlan, planSync } from "../client/sync.ts";
import { abortOnInterrupt, downloadLatestSave, savedAgo } from "../client/transfer.ts";
import { terminalReporter } from "../client/progress.ts";
import { ui } from "../client/ui.ts";
import { printable } from "../client/terminal-text.ts";
import { CattyError } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

/** Paths listed per section after a real run; a dry run lists everything. */
const LISTED = 20;

export default defineCommand({
  meta: { name: "sync", description: "Write a session's latest save over the current directory" },
  args: {
    ...apiArg,
    ...labelArg,
    "dry-run": { type: "boolean", default: false, description: "Only list what would be created, changed and deleted" },
    delete: { type: "boolean", default: false, description: "Delete files that exist only here (never ignored ones such as node_modules or .env)" },
  },
  async run({ args }) {
    const here = resolve(process.cwd());
    const dryRun = args["dry-run"];
    if (args.delete && !dryRun && (here === resolve(homedir()) || here === parse(here).root)) {
      throw new CattyError("bad_request", `Refusing to sync with --delete into ${here}.`, "Run it from the project's own directory.");
    }
    const ctx = await resolveContext(args, () => ui.start("Starting a local Catty server…"));
    using interrupt = abortOnInterrupt();
    const work = await mkdtemp(join(tmpdir(), "catty-sync-"));
    try {
      const archive = join(work, "save.tar.gz");
      const tree = join(work, "tree");
      const { save } = await downloadLatestSave(ctx.client, args.label, archive, { signal: interrupt.signal, report: terminalReporter(ui.warn) });
      await extractArchive(archive, tree, { into: "empty" });
      await rm(archive, { force: true });

      const plan = await planSync(tree, here, { ignore: [work] });
      const from = `the save of ${args.label} from ${savedAgo(save.createdAt)}`;
      if (dryRun) {
        process.stdout.write(`${formatPlan(plan, { dryRun: true, delete: args.delete }).join("\n")}\n`);
        ui.info(`Dry run against ${from}: nothing was changed.`);
        return;
      }
      if (isEmptyPlan(plan, args.delete)) {
        ui.success(`${here} is already up to date with ${from}.`);
        if (plan.localOnly.length > 0) ui.info(`${plan.localOnly.length} files exist only here and were kept (--delete removes them).`);
        return;
      }
      if (interrupt.signal.aborted) throw interrupt.signal.reason;
      const done = await applySync(plan, tree, here, { delete: args.delete });
      process.stdout.write(`${formatPlan(plan, { dryRun: false, delete: args.delete, limit: LISTED }).join("\n")}\n`);
      for (const skip of done.skipped) ui.warn(`Left ${printable(skip.path)} alone: it ${skip.reason}.`);
      const deleted = args.delete ? `, ${done.deleted} deleted` : "";
      ui.success(`Synced ${from} into ${here}: ${done.created} created, ${done.changed} changed${deleted}, ${plan.unchanged} unchanged.`);
    } catch (err) {
      if (!interrupt.signal.aborted) throw err;
      ui.warn("Interrupted before any file was written.");
      process.exitCode = 130;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  },
});
