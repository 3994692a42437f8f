/**
 * Session agents outlive their server by design; a test that is done with a server's data dir
 * ends the agents it started (their pids are in `<dataDir>/sessions/<label>/agent.pid`).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export function killAgents(dataDir: string): void {
  const dir = join(dataDir, "sessions");
  if (!existsSync(dir)) return;
  for (const label of readdirSync(dir)) {
    const pidFile = join(dir, label, "agent.pid");
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, "utf8"));
    if (!Number.isInteger(pid) || pid <= 1) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Whether a process is still there (signal 0 probes without signalling). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
