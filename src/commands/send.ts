/** `catty send LABEL "text"`: the next message, typed into the program and submitted, without attaching. */
import { defineCommand } from "citty";
import { resolveContext } from "../client/context.ts";
import { ui } from "../client/ui.ts";
import { apiArg, labelArg } from "./_args.ts";

export default defineCommand({
  meta: { name: "send", description: "Type a message into a session's program and submit it (when it waits at its prompt)" },
  args: {
    ...apiArg,
    ...labelArg,
    text: { type: "positional", required: true, description: "The message (one line)" },
  },
  async run({ args }) {
    const ctx = await resolveContext(args);
    await ctx.client.send(args.label, args.text);
    ui.success(`Sent to ${args.label}.`);
  },
});
