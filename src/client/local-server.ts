/**
 * Zero setup: with no server configured, `catty` runs a `catty-server` on this machine in the
 * background (as tmux starts its server), with its data under `$CATTY_HOME/server`, and logs in
 * to it with the owner token the server wrote there. A second `catty` finds it running.
 *
 * Before the token leaves this process, the server must prove it is the one whose data dir this
 * is: `/healthz?challenge=<random>` has to answer with HMAC-SHA256(<data-dir>/server-key,
 * challenge). Any other program on the port (an impostor) never sees the token.
 */
import { spawn } from "node:child_process";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { CattyError } from "../protocol/errors.ts";
import { binaryCommand } from "../lib/paths.ts";
import type { CliConfig, Credentials } from "./config.ts";

const START_DEADLINE_MS = 20_000;

const Health = z.object({ ok: z.boolean(), proof: z.string().optional() });

/** What answers on the local port: our server, something else, or nothing. */
export type Probe = "ours" | "other" | "down";

/** Asks whatever listens at `api` to prove it holds the key in `keyFile`. Sends no token. */
export async function probeLocalServer(api: string, keyFile: string): Promise<Probe> {
  const challenge = randomBytes(16).toString("hex");
  let body: unknown;
  try {
    const res = await fetch(`${api}/healthz?challenge=${challenge}`, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) return "other";
    body = await res.json();
  } catch (err) {
    return (err as Error).name === "SyntaxError" ? "other" : "down";
  }
  const health = Health.safeParse(body);
  if (!health.success || !health.data.proof || !existsSync(keyFile)) return "other";
  const key = readFileSync(keyFile, "utf8").trim();
  const want = Buffer.from(createHmac("sha256", key).update(challenge).digest("hex"));
  const got = Buffer.from(health.data.proof);
  return want.length === got.length && timingSafeEqual(want, got) ? "ours" : "other";
}

function impostor(config: CliConfig, api: string, dataDir: string): CattyError {
  return new CattyError(
    "unauthorized",
    `Something answers on ${api}, but it is not the local Catty server of ${config.home} ` +
      `(it could not prove it holds ${join(dataDir, "server-key")}). Your token was not sent to it.`,
    "Stop whatever listens on that port, set CATTY_PORT to use another port, or use `catty login --api URL`.",
  );
}

export async function ensureLocalServer(config: CliConfig, onStarting: () => void): Promise<Credentials> {
  const api = `http://127.0.0.1:${config.localPort}`;
  const dataDir = join(config.home, "server");
  const keyFile = join(dataDir, "server-key");
  const tokenFile = join(dataDir, "owner-token");
  const first = await probeLocalServer(api, keyFile);
  if (first === "other") throw impostor(config, api, dataDir);
  if (first === "down") {
    onStarting();
    mkdirSync(join(config.home, "logs"), { recursive: true, mode: 0o700 });
    const serverLog = join(config.home, "logs", "server.log");
    const logFd = openSync(serverLog, "a", 0o600);
    const [bin, ...args] = binaryCommand("catty-server", config.serverBin);
    try {
      const child = spawn(bin as string, [...args, "serve", "--port", String(config.localPort), "--host", "127.0.0.1", "--data-dir", dataDir], {
        detached: true,
        stdio: ["ignore", logFd, logFd],
        env: { ...process.env, CATTY_DATA_DIR: dataDir },
      });
      child.unref();
      const deadline = Date.now() + START_DEADLINE_MS;
      let exited = false;
      child.once("exit", () => (exited = true));
      for (;;) {
        const probe = await probeLocalServer(api, keyFile);
        if (probe === "ours") break;
        // Our server could not bind: whatever took the port meanwhile is not ours.
        if (exited && probe === "other") throw impostor(config, api, dataDir);
        if (exited || Date.now() > deadline) {
          throw new CattyError(
            "unavailable",
            `Could not start a local Catty server on port ${config.localPort}.`,
            `See ${serverLog}; if the port is taken, set CATTY_PORT or use --api URL.`,
          );
        }
        await Bun.sleep(100);
      }
    } finally {
      closeSync(logFd);
    }
  }
  if (!existsSync(tokenFile)) {
    throw new CattyError(
      "unauthorized",
      `The local Catty server of ${config.home} has no owner token at ${tokenFile}.`,
      "Create one with `catty-server token create --data-dir " + dataDir + "` and log in with `catty login --api " + api + "`.",
    );
  }
  return { api, token: readFileSync(tokenFile, "utf8").trim(), local: true };
}
