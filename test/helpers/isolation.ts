/**
 * What the isolation tests run inside a session (sandboxed local and Docker): scripts that write
 * their findings, one per line, to /workspace/result.txt and end with `done`.
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * What a session must not read on the host: the server's secrets and database, and a file of
 * the host user's (written here).
 */
export function hostTargets(dataDir: string): string[] {
  const hostFile = join(process.env.HOME as string, "host-secret.txt");
  writeFileSync(hostFile, "host user's file\n");
  return ["blob-secret", "owner-token", "catty.db", "server-key"].map((f) => join(dataDir, f)).concat(hostFile);
}

/** Lines that try to read each of `targets`, writing `read F` or `denied F`. */
export function readAttempts(targets: string[]): string[] {
  return targets.map((f) => `if cat '${f}' >/dev/null 2>&1; then echo "read ${f}" >> $r; else echo "denied ${f}" >> $r; fi`);
}

/**
 * A fork bomb, then a runaway allocation; writes `started=N` (the processes of the program's own
 * user at the peak, counted with shell builtins, since at the limit nothing can fork) and
 * `memory=EXIT` (not 0 when the limit ended it), then `done`, and stays.
 */
export const LIMITS_SCRIPT = [
  "r=/workspace/result.txt",
  // dash gives up on a failed fork at once (bash would retry for a long time).
  "sh -c 'for i in $(seq 300); do sleep 30 & done' 2>/dev/null",
  'n=0; for p in /proc/[0-9]*; do [ -O "$p" ] && n=$((n+1)); done; echo "started=$n" >> $r',
  "pkill sleep 2>/dev/null",
  // 1 GiB without a newline: tail holds it all, and the memory limit ends it.
  "head -c 1073741824 /dev/zero | tail > /dev/null; echo \"memory=$?\" >> $r",
  "echo done >> $r",
  "sleep 300",
].join("\n");

/** The figures LIMITS_SCRIPT wrote. */
export function limitsFound(lines: string[]): { started: number; memoryExit: number } {
  const value = (key: string): number => Number(lines.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1));
  return { started: value("started"), memoryExit: value("memory") };
}
