/** Database rows for tests that talk to a store directly. */
import type { SessionRow } from "../../server/store/types.ts";

/** A running local session row with every column set; `patch` overrides. */
export function sessionRow(patch: Partial<SessionRow> & { id: string }): SessionRow {
  return {
    label: "quick-fox-0042",
    userId: "u1",
    status: "running",
    region: "local",
    provider: "local",
    command: ["vim"],
    cols: 80,
    rows: 24,
    agentTokenHash: `hash-${patch.id}`,
    machine: { provider: "local", pid: 99, dir: "/d" },
    createdAt: new Date().toISOString(),
    endedAt: null,
    exitCode: null,
    endReason: null,
    lastScreen: null,
    restoreKey: null,
    finalSave: null,
    idleTimeoutMs: 1000,
    expiresAt: null,
    ending: null,
    attention: null,
    relayReplica: null,
    lastActivityAt: null,
    ...patch,
  };
}
