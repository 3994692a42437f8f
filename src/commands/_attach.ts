/** Shared by `catty new` and `catty connect`: attach, then say how it ended and pick the exit code. */
import { createLog } from "../lib/log.ts";
import type { Context } from "../lib/context.ts";
import { ui } from "../lib/ui.ts";
import { attachTerminal } from "../terminal/attach.ts";
import type { ClientMode } from "../protocol/index.ts";

export async function attachAndReport(
  ctx: Context,
  label: string,
  opts: { mode: ClientMode; offset: number | null; autoReconnect: boolean },
): Promise<number> {
  const log = createLog({ scope: "attach", file: ctx.config.logFile });
  const result = await attachTerminal({ client: ctx.client, label, log, ...opts });
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
