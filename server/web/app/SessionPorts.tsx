/** @jsxImportSource preact */
/** A running session's listening ports on the dashboard: "3000 · node". */
import type { Session } from "../../../src/protocol/session.ts";

export function SessionPorts({ s }: { s: Pick<Session, "ports"> }) {
  if (s.ports.length === 0) return null;
  return (
    <span class="ports" aria-label="Listening ports">
      {s.ports.map((p) => (
        <code key={p.port}>{p.name ? `${p.port} · ${p.name}` : String(p.port)}</code>
      ))}
    </span>
  );
}
