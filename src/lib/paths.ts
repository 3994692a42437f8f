/**
 * Where things live, and how one binary finds another. A compiled binary finds its siblings
 * next to its own executable; when run from source (`bun src/cli.ts`) it runs the sibling's
 * source entry with the same Bun.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

/** `$CATTY_HOME`, default `~/.catty`: credentials, logs, the local server's data. */
export function cattyHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.CATTY_HOME || join(env.HOME || homedir(), ".catty");
}

const ENTRIES = {
  "catty": "src/cli.ts",
  "catty-server": "server/main.ts",
  "catty-agent": "agent/main.ts",
} as const;
export type BinaryName = keyof typeof ENTRIES;

/** True when running as a `bun build --compile` executable. */
export function isCompiled(): boolean {
  return import.meta.path.startsWith("/$bunfs") || import.meta.path.startsWith("B:\\~BUN");
}

/**
 * The command line that runs binary `name`: `override` (an env variable's value) if given,
 * else the executable beside this one, else its source entry under this checkout.
 */
export function binaryCommand(name: BinaryName, override?: string): string[] {
  if (override) return [override];
  if (isCompiled()) return [join(dirname(process.execPath), name)];
  const root = resolve(import.meta.dir, "../..");
  const built = join(root, "dist", name);
  const entry = join(root, ENTRIES[name]);
  if (existsSync(entry)) return [process.execPath, entry];
  return [built];
}
