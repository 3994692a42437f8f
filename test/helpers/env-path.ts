/**
 * A `PATH` for servers under test that leaves out what the machine happens to have: a default
 * session runs Claude Code when `claude` is on the agent's PATH (agent/agent.ts), so a test that
 * expects the login shell must not see one installed globally.
 */
import { accessSync, constants, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { tempDirs } from "./fs.ts";

/** Removed after the tests of the file that imports this. */
const shadowDirs = tempDirs("catty-path-without-");

const holds = (dir: string, name: string): boolean => {
  try {
    accessSync(join(dir, name), constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * `path` in which no directory holds an executable `name`. A directory that holds one is replaced
 * by a copy of it made of symlinks to everything else in it: a global `claude` often lies beside
 * `bash` and the rest in /usr/bin, which the sessions still need.
 */
export function pathWithout(name: string, path = process.env.PATH ?? "/usr/bin:/bin"): string {
  let shadows: string | null = null;
  return path
    .split(":")
    .filter((dir) => dir !== "")
    .map((dir) => {
      if (!holds(dir, name)) return dir;
      shadows ??= shadowDirs();
      const shadow = join(shadows, String(readdirSync(shadows).length));
      mkdirSync(shadow);
      for (const entry of readdirSync(dir)) if (entry !== name) symlinkSync(join(dir, entry), join(shadow, entry));
      return shadow;
    })
    .join(":");
}
