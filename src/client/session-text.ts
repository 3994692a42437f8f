/** How a session reads in a terminal: short ages and its status with what its program is doing. */
import type { Session } from "../protocol/index.ts";

/** "42s ago", "5m ago", "3h ago", "2d ago". */
export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** What a running session's program is doing: "waiting 2m", "working", "idle 5m"; "" when not known or ended. */
export function attentionText(s: Session, now = Date.now()): string {
  if (!s.attention || s.status !== "running") return "";
  const { state, since } = s.attention;
  return state === "working" ? "working" : `${state} ${ago(since, now).replace(/ ago$/, "")}`;
}

/** `running · waiting 2m`: the status, and for a running session what its program is doing. */
export function statusText(s: Session, now = Date.now()): string {
  const attention = attentionText(s, now);
  return attention ? `${s.status} · ${attention}` : s.status;
}
