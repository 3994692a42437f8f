/** Shared by `catty new` and `catty connect`: attach, then say how it ended and pick the exit code. */
import { createLog, type Log } from "../lib/log.ts";
import { loadSyncState, SyncBackWriter, syncStateFile, type SyncState } from "../client/sync-back.ts";
import type { Context } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import { printable } from "../client/terminal-text.ts";
import { attachTerminal } from "../client/attach.ts";
import type { ClientMode } from "../protocol/index.ts";

export interface AttachFlags {
  mode: ClientMode;
  offset: number | null;
  autoReconnect: boolean;
  syncBack: boolean;
  /** Files `catty new` just uploaded (so later local edits are recognised as such). */
  uploaded?: SyncState["files"];
}

async function openSyncBack(ctx: Context, label: string, flags: AttachFlags, log: Log): Promise<SyncBackWriter | null> {
  if (!flags.syncBack || flags.mode !== "interactive") return null;
  const root = process.cwd();
  const file = syncStateFile(ctx.config.home, label, root);
  const state = await loadSyncState(file, root);
  if (flags.uploaded) Object.assign(state.files, flags.uploaded);
  return new SyncBackWriter(state, file, log, { maxFileBytes: ctx.config.syncMaxBytes });
}

function reportSync(writer: SyncBackWriter | null): void {
  if (!writer?.active) return;
  const s = writer.summary;
  const parts = [`${s.written} file${s.written === 1 ? "" : "s"} written`, `${s.deleted} deleted`];
  ui.info(`Sync-back paused: ${parts.join(", ")} in ${process.cwd()}.`);
  // Paths (and reasons) the session named: printed without the control characters they may hold.
  for (const c of s.conflicts) ui.warn(`Kept your local version: ${printable(c)}`);
  for (const k of s.skipped) ui.info(`Not synced back: ${printable(k)}`);
  if (s.refused.length > 0) {
    ui.warn(`Refused ${s.refused.length} unsafe path${s.refused.length === 1 ? "" : "s"} from the session (nothing was written outside this directory); see the log.`);
  }
}

export async function attachAndReport(ctx: Context, label: string, flags: AttachFlags): Promise<number> {
  const log = createLog({ scope: "attach", file: ctx.config.logFile, level: ctx.config.logLevel });
  const syncBack = await openSyncBack(ctx, label, flags, log);
  const result = await attachTerminal({
    client: ctx.client,
    label,
    log,
    mode: flags.mode,
    offset: flags.offset,
    autoReconnect: flags.autoReconnect,
    syncBack,
    detachKeys: ctx.config.detachKeys,
    cattyHome: ctx.config.home,
    predict: ctx.config.predict,
  });
  reportSync(syncBack);
  switch (result.kind) {
    case "detached":
      ui.info(`Detached from ${label}; it keeps running. Reconnect with \`catty connect ${label}\`.`);
      return 0;
    case "closed":
      return 0;
    case "signal":
      ui.warn(`Interrupted (${result.signal}); ${label} keeps running. Reconnect with \`catty connect ${label}\`.`);
      return 130;
    case "takeover":
      ui.info(`Taken over by another client; ${label} keeps running.`);
      return 0;
    case "exit":
      if (result.status === "failed") {
        ui.error(`Session ${label} failed: ${result.reason ?? "unknown reason"}.`);
        return 1;
      }
      if (result.reason && !result.reason.startsWith("program exited")) {
        ui.info(`Session ${label} ${result.status === "timed_out" ? "timed out" : result.status}: ${result.reason}.`);
        ui.info(`Its files stay available: \`catty download ${label}\`, \`catty sync ${label}\`, or \`catty new --from ${label}\`.`);
      }
      return result.code;
    case "ended": {
      if (result.screen) process.stdout.write(`${result.screen}\x1b[0m\r\n`);
      const why = result.reason ? `: ${result.reason}` : "";
      ui.info(`Session ${label} has ended (${result.status}${why}).`);
      ui.info(
        `Get its files with \`catty download ${label}\` or \`catty sync ${label}\`, or start again from them with \`catty new --from ${label}\`.`,
      );
      return 1;
    }
    case "error":
      throw result.error;
    default: {
      const never: never = result;
      return never;
    }
  }
}
