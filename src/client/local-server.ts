/**
 * Zero setup: with no server configured, `catty` runs a `catty-server` on this machine in the
 * background (as tmux starts its server), with its data under `$CATTY_HOME/server`, and logs in
 * to it with the owner token the server wrote there. A second `catty` finds it running.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CattyError } from "../protocol/errors.ts";
import type { CliConfig, Credentials } from "./config.ts";
import { binaryCommand } from "../lib/paths.ts";

const START_DEADLINE_MS = 20_000;

async function healthy(api: string): Promise<boolean> {
  try {
    const res = await fetch(`${api}/healthz`, { signal: AbortSignal.timeout(2_000) });
    return res.ok;
  } catch {
    return false;
  }
}

export async function ensureLocalServer(config: CliConfig, onStarting: () => void): Promise<Credentials> {
  const api = `http://127.0.0.1:${config.localPort}`;
  const dataDir = join(config.home, "server");
  const tokenFile = join(dataDir, "owner-token");
  if (!(await healthy(api))) {
    onStarting();
    mkdirSync(join(config.home, "logs"), { recursive: true, mode: 0o700 });
    const logFd = openSync(join(config.home, "logs", "server.log"), "a", 0o600);
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
      while (!(await healthy(api))) {
        if (exited || Date.now() > deadline) {
          throw new CattyError(
            "unavailable",
            `Could not start a local Catty server on port ${config.localPort}.`,
            `See ${join(config.home, "logs", "server.log")}; if the port is taken, set CATTY_PORT or use --api URL.`,
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
      `A server answers on ${api}, but it is not the local Catty server of ${config.home}.`,
      "Log in to it with `catty login --api URL`, or set CATTY_PORT to use another port.",
    );
  }
  return { api, token: readFileSync(tokenFile, "utf8").trim(), local: true };
}
