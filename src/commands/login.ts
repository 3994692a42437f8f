import { defineCommand } from "citty";
import { hostname } from "node:os";
import { z } from "zod";
import { VERSION } from "../lib/version.ts";
import { CattyError } from "../protocol/index.ts";
import { createApiClient } from "../client/api.ts";
import { browsable, openInBrowser } from "../client/browser.ts";
import { printable, printableDeep } from "../client/terminal-text.ts";
import { readCliConfig, readCredentials, writeCredentials } from "../client/config.ts";
import { ui } from "../client/ui.ts";
import { checkTransport } from "../client/transport.ts";
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

const DeviceStart = z.object({
  deviceCode: z.string(),
  userCode: z.string(),
  verificationUri: z.string(),
  verificationUriComplete: z.string(),
  expiresIn: z.number(),
  interval: z.number(),
});

/**
 * The device-code login (RFC 8628 style): a short code to approve in a browser where the user is
 * signed in to the server; polls until approved, denied or expired (slowing down when asked).
 */
async function deviceLogin(api: string): Promise<string> {
  const call = async (path: string, body: unknown): Promise<{ status: number; json: unknown }> => {
    // The person approving sees this, to recognize their own terminal.
    const agent = `catty/${VERSION} (${process.platform} ${process.arch}; ${hostname()})`;
    const res = await fetch(`${api}${path}`, { method: "POST", headers: { "content-type": "application/json", "user-agent": agent }, body: JSON.stringify(body) }).catch((err: Error) => {
      throw new CattyError("unavailable", `Could not reach ${api}: ${err.message}`, "Check the URL and your network.");
    });
    return { status: res.status, json: await res.json().catch(() => null) };
  };
  const started = await call("/v1/device/code", {});
  const start = DeviceStart.safeParse(started.json);
  if (started.status !== 200 || !start.success) throw new CattyError("unavailable", `${api} does not offer a device login (HTTP ${started.status}).`, "Log in with `catty login --token TOKEN`.");
  // The server's words are printed, and its link opened only if it is a page of the server itself.
  const d = printableDeep(start.data);
  ui.box({ title: "Sign in from your browser", message: `Open ${d.verificationUri}\nand enter the code   ${d.userCode}` });
  if (!browsable(d.verificationUriComplete, api)) ui.warn(`Not opening ${d.verificationUriComplete}: it is not a page of ${api}. Open the address above yourself if it is right.`);
  else openInBrowser(d.verificationUriComplete, api);
  ui.start("Waiting for approval in the browser… (Ctrl+C to cancel)");
  let interval = d.interval;
  const deadline = Date.now() + d.expiresIn * 1000;
  while (Date.now() < deadline) {
    await Bun.sleep(interval * 1000);
    const r = await call("/v1/device/token", { deviceCode: d.deviceCode });
    const body = r.json as { token?: string; error?: string; description?: string } | null;
    if (r.status === 200 && body?.token) return body.token;
    if (body?.error === "authorization_pending") continue;
    if (body?.error === "slow_down") {
      interval += 5;
      continue;
    }
    if (body?.error === "access_denied") throw new CattyError("forbidden", "The login was denied in the browser.", "Run `catty login` again to retry.");
    if (body?.error === "expired_token") break;
    throw new CattyError("unavailable", `Unexpected answer from ${api}: HTTP ${r.status}${body?.description ? ` (${printable(String(body.description))})` : ""}.`);
  }
  throw new CattyError("unauthorized", "The login code expired before it was approved.", "Run `catty login` again.");
}

export default defineCommand({
  meta: { name: "login", description: "Store the server URL and token to use" },
  args: {
    ...apiArg,
    token: { type: "string", description: "API token (for scripts; a token on stdin works too)" },
    device: { type: "boolean", default: true, description: "Without --token on a terminal: approve a short code in the browser (--no-device: type the token)" },
    insecure: { type: "boolean", description: "Allow an http:// server that is not this machine (a private network you trust): the token crosses it in clear" },
  },
  async run({ args }) {
    const config = readCliConfig(args);
    const api = config.apiOverride ?? readCredentials(config)?.api;
    if (!api) throw new CattyError("bad_request", "Which server?", "Run `catty login --api URL`.");
    const insecure = args.insecure === true;
    checkTransport(api, insecure);
    const token = args.token || (args.device && process.stdin.isTTY ? await deviceLogin(api) : await promptToken());
    if (!token) throw new CattyError("bad_request", "No token given.", "Pass --token TOKEN or type it at the prompt.");
    const { user } = await createApiClient(api, token).whoami();
    writeCredentials(config, { api, token, ...(insecure && api.startsWith("http:") ? { insecure } : {}) });
    ui.success(`Logged in to ${api} as ${user}. Credentials are in ${config.credentialsFile}.`);
  },
});
