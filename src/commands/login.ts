import { defineCommand } from "citty";
import { CattyError } from "../protocol/index.ts";
import { createApiClient } from "../client/api.ts";
import { readCliConfig, readCredentials, writeCredentials } from "../client/config.ts";
import { ui } from "../client/ui.ts";
import { apiArg } from "./_args.ts";

/** Reads a token from the terminal without echoing it, or one line from a pipe. */
async function promptToken(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const text = await new Response(Bun.stdin.stream()).text();
    return (text.split("\n")[0] ?? "").trim();
  }
  process.stderr.write("Token: ");
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = "";
      const onData = (chunk: Buffer): void => {
        for (const ch of chunk.toString("utf8")) {
          if (ch === "\r" || ch === "\n") {
            stdin.off("data", onData);
            resolve(value.trim());
            return;
          }
          if (ch === "\x03") {
            stdin.off("data", onData);
            reject(new CattyError("bad_request", "Login cancelled."));
            return;
          }
          if (ch === "\x7f" || ch === "\b") value = value.slice(0, -1);
          else value += ch;
        }
      };
      stdin.on("data", onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}

export default defineCommand({
  meta: { name: "login", description: "Store the server URL and token to use" },
  args: { ...apiArg, token: { type: "string", description: "API token (prompted for when not given)" } },
  async run({ args }) {
    const config = readCliConfig(args);
    const api = config.apiOverride ?? readCredentials(config)?.api;
    if (!api) throw new CattyError("bad_request", "Which server?", "Run `catty login --api URL`.");
    const token = args.token || (await promptToken());
    if (!token) throw new CattyError("bad_request", "No token given.", "Pass --token TOKEN or type it at the prompt.");
    const { user } = await createApiClient(api, token).whoami();
    writeCredentials(config, { api, token });
    ui.success(`Logged in to ${api} as ${user}. Credentials are in ${config.credentialsFile}.`);
  },
});
