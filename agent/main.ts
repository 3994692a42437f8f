/**
 * `catty-agent`: runs inside each session machine, started by the server's provider. It dials
 * the server, runs the program under a PTY and stays until the program ends.
 */
import { mkdirSync } from "node:fs";
import { createLog } from "../src/lib/log.ts";
import { VERSION } from "../src/lib/version.ts";
import { createAgent } from "./agent.ts";
import { readAgentConfig } from "./config.ts";
import { dialServer } from "./link.ts";
import { bunPty } from "./pty.ts";

if (process.argv.includes("--version")) {
  console.log(VERSION);
  process.exit(0);
}

const log = createLog({ scope: "agent" });
try {
  const config = readAgentConfig();
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  process.chdir(config.stateDir);
  // The agent must outlive its parent and terminal: a hang-up is not a reason to stop.
  process.on("SIGHUP", () => log.info("ignoring SIGHUP"));
  const agent = createAgent({
    config,
    pty: bunPty,
    dial: (handlers) => dialServer({ url: config.serverUrl, token: config.token, log }, handlers),
    log,
  });
  const code = await agent.done;
  log.info("agent done", { code });
  process.exit(0);
} catch (err) {
  log.error((err as Error).message);
  process.exit(1);
}
