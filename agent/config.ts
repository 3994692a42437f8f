/**
 * `catty-agent` configuration: the environment contract (`src/protocol/agent-env.ts`) a provider
 * starts it with, read once into a frozen object. Only the defaults that depend on other values
 * are filled in here.
 */
import { dirname, join } from "node:path";
import { readAgentEnv, type AgentEnv } from "../src/protocol/agent-env.ts";

export type AgentConfig = Readonly<
  Omit<AgentEnv, "stateDir"> & {
    /** `CATTY_AGENT_STATE`: a private directory for temp archives (default: `agent-state` beside the workspace). */
    stateDir: string;
  }
>;

/** Throws `SettingsError` naming the variable when one is missing or malformed. */
export function readAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const read = readAgentEnv(env);
  return Object.freeze({ ...read, stateDir: read.stateDir ?? join(dirname(read.workspace), "agent-state") });
}
