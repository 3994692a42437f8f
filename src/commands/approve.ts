import { defineCommand } from "citty";
import { answerArgs, sendAnswer } from "./_answer.ts";

export default defineCommand({
  meta: { name: "approve", description: "Allow what a session's Claude Code asks (see catty inbox)" },
  args: {
    ...answerArgs,
    always: { type: "boolean", default: false, description: "Allow the same from now on in this session (a Bash command's first word, or the tool)" },
  },
  run: ({ args }) => sendAnswer(args, { behavior: "allow", always: args.always }),
});
