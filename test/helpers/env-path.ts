/**
 * A `PATH` for servers under test that leaves out what the machine happens to have: a default
 * session runs Claude Code when `claude` is on the agent's PATH (agent/agent.ts), so a test that
 * expects the login shell must not see one installed globally.
 */
import { accessSync, constants } from "node:fs";
import { join } from "node:path";

/** `path` without the directories holding an executable `name`. */
export function pathWithout(name: string, path = process.env.PATH ?? "/usr/bin:/bin"): string {
  const holds = (dir: string): boolean => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  return path.split(":").filter((dir) => dir !== "" && !holds(dir)).join(":");
}
