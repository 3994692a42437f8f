/** `catty approve` and `catty deny`: one answer to a request of a session (its only one when no ID is given). */
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import type { RequestAnswer } from "../protocol/index.ts";
import { apiArg, labelArg } from "./_args.ts";

export const answerArgs = {
  ...apiArg,
  ...labelArg,
  id: { type: "positional", required: false, description: "The request's ID (from catty inbox); needed when the session has more than one" },
} as const;

export async function sendAnswer(args: { api?: string; label: string; id?: string }, answer: RequestAnswer): Promise<void> {
  const ctx = await resolveContext(args);
  const done = await ctx.client.answer(args.label, args.id || null, answer);
  ui.success(`${done.behavior === "allow" ? "Allowed" : "Denied"} request ${done.id} of ${args.label}.`);
  if (done.rule) ui.info(`From now on ${args.label} allows ${done.rule.prefix === null ? `every ${done.rule.tool}` : `\`${done.rule.prefix}\``} without asking.`);
}
