import { defineCommand } from "citty";
import { answerArgs, sendAnswer } from "./_answer.ts";

export default defineCommand({
  meta: { name: "deny", description: "Deny what a session's Claude Code asks (see catty inbox)" },
  args: {
    ...answerArgs,
    message: { type: "string", description: "Told to Claude with the denial" },
  },
  run: ({ args }) => sendAnswer(args, { behavior: "deny", ...(args.message ? { message: args.message } : {}) }),
});
