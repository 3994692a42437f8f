/** How a session reads in a terminal: short ages and its status with what its program is doing. */
import type { Session } from "../protocol/index.ts";
import { ago } from "../lib/format.ts";

export { ago };

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

/** The ports a running session's programs listen on: "3000 · node, 8000 · python3"; "" when none. */
export function portsText(s: Pick<Session, "ports">): string {
  return s.ports.map((p) => (p.name ? `${p.port} · ${p.name}` : String(p.port))).join(", ");
}
