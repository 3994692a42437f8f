/** `catty list` and `catty connect` without a label on a terminal: the picker, then what was chosen. */
import type { Context } from "../client/context.ts";
import { requireTty } from "../client/attach.ts";
import { ui } from "../client/ui.ts";
import { inCi } from "../client/ci.ts";
import { runPicker } from "../tui/picker/run.tsx";
import { attachAndReport } from "./_attach.ts";
import { downloadLatest } from "./download.ts";

/** Whether the picker can run: stdin and stdout are both terminals, and this is not CI (Ink would draw nothing until the end there). */
export const canPick = (): boolean => Boolean(process.stdin.isTTY && process.stdout.isTTY) && !inCi();

/** Runs the picker and acts on the choice; resolves to the exit code. */
export async function pickAndAct(ctx: Context, flags: { syncBack: boolean; autoReconnect: boolean }): Promise<number> {
  const choice = await runPicker({
    load: () => ctx.client.list(),
    stop: async (label) => void (await ctx.client.stop(label)),
  });
  switch (choice.kind) {
    case "quit":
      return choice.interrupted ? 130 : 0;
    case "download":
      return downloadLatest(ctx, choice.session.label, undefined, "dir");
    case "connect":
      requireTty();
      if (choice.session.status !== "running" && choice.session.status !== "starting") ui.info(`${choice.session.label} has ended; its last screen:`);
      return attachAndReport(ctx, choice.session.label, {
        mode: choice.view ? "view" : "interactive",
        offset: null,
        autoReconnect: flags.autoReconnect,
        syncBack: flags.syncBack,
      });
  }
}
