/**
 * `catty-agent`: runs inside each session machine, started by the server's provider. It reads
 * the environment contract once, dials the server, runs the program under a PTY and stays until
 * the program ends — or exits non-zero when its configuration is bad or its server is gone for good.
 */
import { mkdirSync } from "node:fs";
import { createLog } from "../src/lib/log.ts";
import { VERSION } from "../src/lib/version.ts";
import { createAgent } from "./agent.ts";
import { readAgentConfig, type AgentConfig } from "./config.ts";
import { dialServer } from "./link.ts";
import { runNetnsBridge } from "./netns.ts";
import { bunPty } from "./pty.ts";

if (process.argv.includes("--version")) {
  console.log(VERSION);
  process.exit(0);
}

// The bridge into a session's own network namespace (agent/netns.ts), started by the agent itself.
const bridge = process.argv.indexOf("--netns-bridge");
if (bridge !== -1) {
  runNetnsBridge(process.argv[bridge + 1] ?? "", Number(process.argv[bridge + 2]), process.argv[bridge + 3]);
  await new Promise(() => {});
}

let config: AgentConfig;
try {
  config = readAgentConfig(process.env);
} catch (err) {
  createLog({ scope: "agent" }).error(`catty-agent cannot start: ${(err as Error).message}`);
  process.exit(1);
}

const log = createLog({ scope: "agent", level: config.logLevel });
try {
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
  const end = await agent.done;
  log.info("agent done", end);
  process.exit(end.kind === "orphaned" ? 1 : 0);
} catch (err) {
  log.error((err as Error).message, { err });
  process.exit(1);
}
