/**
 * A provider's machine played by a process on the test host, for the API stand-ins (Fly,
 * Kubernetes): the real `catty-agent` with the environment the provider wrote for the machine,
 * only its workspace and state directories moved under `dir` (the image's /workspace and
 * /var/lib/catty-agent are not this host's to write). Its output goes to `dir/agent.out`.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { ServerProcess } from "./server-process.ts";

export function agentAsMachine(agentBin: string, dir: string, env: Record<string, string>): Subprocess {
  mkdirSync(join(dir, "workspace"), { recursive: true }); // the image has an empty /workspace
  const root = process.getuid?.() === 0;
  const out = Bun.file(join(dir, "agent.out"));
  return Bun.spawn([agentBin], {
    cwd: dir,
    stdout: out,
    stderr: out,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...env,
      CATTY_WORKSPACE: join(dir, "workspace"),
      CATTY_AGENT_STATE: join(dir, "state"),
      // Giving the program a user of its own takes root, as the agent has in a Docker or Fly machine.
      ...(root ? {} : { CATTY_AGENT_WRAP: "[]", CATTY_AGENT_OWNER: "" }),
    },
  });
}

/**
 * A server whose sessions run on such machines: listening on 127.0.0.2 (an address the remote
 * providers accept as one machines reach, and which they are told to dial), with `env`.
 */
export async function serverForMachines(serverBin: string, env: Record<string, string>): Promise<{ server: ServerProcess; api: ApiClient }> {
  const server = new ServerProcess(serverBin, { CATTY_MASTER_KEY: "3d".repeat(32), ...env }, { host: "127.0.0.2" });
  await server.start();
  return { server, api: createApiClient(server.url, server.ownerToken) };
}
