/**
 * Rows as both stores read and write them: the database's columns (snake case; numbers that may
 * come back as strings from PostgreSQL's BIGINT) to the `Store`'s shapes and back. Stored JSON
 * (machine handles) and enumerations are checked on the way out: a row the database holds is input
 * like any other.
 */
import type { Log } from "../../src/lib/log.ts";
import { AttentionState, MachineHandle, SessionStatus, type Attention } from "../../src/protocol/index.ts";
import type { DeviceCode, PendingEnding, PortGrant, ReplicaRow, SaveRow, SessionPatch, SessionRow, TokenRow, TransferRow, UploadRow, User } from "./types.ts";

export type Row = Record<string, unknown>;

/** A BIGINT (a string from the client) or an INTEGER as a number; null stays null. */
export function num(v: unknown): number;
export function num(v: unknown, nullable: true): number | null;
export function num(v: unknown, nullable = false): number | null {
  if (v === null || v === undefined) {
    if (nullable) return null;
    throw new Error("a number column is null");
  }
  return typeof v === "number" ? v : Number(v);
}
export const str = (v: unknown): string => v as string;
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : (v as string));

/** Readers of each table's rows; `log` hears (once per session) of machine handles that do not parse. */
export function rowReaders(log?: Log) {
  const warned = new Set<string>();
  const warn = (r: Row): void => {
    if (warned.has(str(r.id))) return;
    warned.add(str(r.id));
    log?.warn("unreadable machine handle in the database; treating the machine as gone", { label: r.label });
  };
  const userFrom = (r: Row | null): User | null => (r ? { id: str(r.id), name: str(r.name), createdAt: str(r.created_at) } : null);
  const sessionFrom = (r: Row): SessionRow => ({
    id: str(r.id),
    label: str(r.label),
    userId: str(r.user_id),
    status: r.status as SessionRow["status"],
    region: str(r.region),
    provider: str(r.provider),
    command: JSON.parse(str(r.command)) as string[],
    cols: num(r.cols),
    rows: num(r.rows),
    agentTokenHash: str(r.agent_token_hash),
    machine: machineFrom(r, warn),
    createdAt: str(r.created_at),
    endedAt: strOrNull(r.ended_at),
    exitCode: num(r.exit_code, true),
    endReason: strOrNull(r.end_reason),
    lastScreen: strOrNull(r.last_screen),
    restoreKey: strOrNull(r.restore_key),
    finalSave: strOrNull(r.final_save),
    idleTimeoutMs: num(r.idle_timeout_ms),
    expiresAt: strOrNull(r.expires_at),
    ending: endingFrom(r),
    attention: attentionFrom(r),
    relayReplica: strOrNull(r.relay_replica),
    lastActivityAt: strOrNull(r.last_activity_at),
  });
  const saveFrom = (r: Row): SaveRow => ({
    id: str(r.id),
    sessionId: str(r.session_id),
    key: str(r.key),
    createdAt: str(r.created_at),
    size: num(r.size),
    files: num(r.files),
    reason: str(r.reason),
    added: num(r.added, true),
  });
  const uploadFrom = (r: Row): UploadRow => ({ id: str(r.id), userId: str(r.user_id), key: str(r.key), size: num(r.size), createdAt: str(r.created_at) });
  const deviceFrom = (r: Row | null): DeviceCode | null => {
    if (!r) return null;
    const status = (["pending", "approved", "denied", "used"] as const).find((s) => s === r.status) ?? "denied";
    return {
      deviceHash: str(r.device_hash), userCode: str(r.user_code), createdAt: str(r.created_at), expiresAt: str(r.expires_at),
      status, userId: strOrNull(r.user_id), polledAt: strOrNull(r.polled_at),
      requesterAddress: strOrNull(r.requester_address ?? null), requesterAgent: strOrNull(r.requester_agent ?? null),
    };
  };
  const replicaFrom = (r: Row): ReplicaRow => ({ id: str(r.id), url: str(r.url), startedAt: str(r.started_at), seenAt: str(r.seen_at) });
  const transferFrom = (r: Row | null): TransferRow | null =>
    r
      ? {
          id: str(r.id),
          kind: r.kind === "upload" ? "upload" : "save",
          userId: str(r.user_id),
          sessionId: strOrNull(r.session_id),
          reason: str(r.reason),
          startedAt: num(r.started_at),
          expiresAt: num(r.expires_at),
          added: num(r.added),
          cap: num(r.cap),
        }
      : null;
  const tokenFrom = (r: Row): TokenRow => ({ hash: str(r.hash), userId: str(r.user_id), userName: str(r.name), createdAt: str(r.created_at), expiresAt: strOrNull(r.expires_at) });
  return { sessionFrom, saveFrom, uploadFrom, deviceFrom, userFrom, replicaFrom, transferFrom, tokenFrom };
}

function attentionFrom(r: Row): Attention | null {
  const state = AttentionState.safeParse(r.attention_state);
  return state.success && typeof r.attention_since === "string" ? { state: state.data, since: r.attention_since } : null;
}

/** The stored machine handle, checked: one that does not parse counts as a machine that is gone. */
function machineFrom(r: Row, warn: (r: Row) => void): MachineHandle | null {
  if (r.machine === null || r.machine === undefined) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(str(r.machine));
  } catch {
    raw = undefined;
  }
  const parsed = MachineHandle.safeParse(raw);
  if (parsed.success) return parsed.data;
  warn(r);
  return null;
}

function endingFrom(r: Row): PendingEnding | null {
  const status = SessionStatus.safeParse(r.ending_status);
  return status.success && typeof r.ending_reason === "string" ? { status: status.data, reason: r.ending_reason } : null;
}

const COLUMNS: Record<keyof SessionPatch, string> = {
  status: "status",
  machine: "machine",
  endedAt: "ended_at",
  exitCode: "exit_code",
  endReason: "end_reason",
  lastScreen: "last_screen",
  cols: "cols",
  rows: "rows",
  restoreKey: "restore_key",
  finalSave: "final_save",
  ending: "ending_status",
  attention: "attention_state",
  relayReplica: "relay_replica",
  lastActivityAt: "last_activity_at",
};

/** A patch's values as the columns store them. */
export function patchColumns(patch: SessionPatch): Array<[string, string | number | null]> {
  const out: Array<[string, string | number | null]> = [];
  for (const key of Object.keys(patch) as (keyof SessionPatch)[]) {
    if (key === "machine") out.push([COLUMNS.machine, patch.machine ? JSON.stringify(patch.machine) : null]);
    else if (key === "ending") {
      out.push(["ending_status", patch.ending?.status ?? null]);
      out.push(["ending_reason", patch.ending?.reason ?? null]);
    } else if (key === "attention") {
      out.push(["attention_state", patch.attention?.state ?? null]);
      out.push(["attention_since", patch.attention?.since ?? null]);
    } else out.push([COLUMNS[key], (patch[key] as string | number | null | undefined) ?? null]);
  }
  return out;
}

/** A `port_grants` row. */
export function grantFrom(r: Row): PortGrant {
  const kind = r.kind === "ticket" || r.kind === "cookie" ? r.kind : "share";
  return {
    hash: str(r.hash),
    kind,
    userId: str(r.user_id),
    sessionId: str(r.session_id),
    port: num(r.port),
    createdAt: str(r.created_at),
    expiresAt: str(r.expires_at),
    revokedAt: strOrNull(r.revoked_at),
  };
}
