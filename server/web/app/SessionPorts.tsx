/** @jsxImportSource preact */
/**
 * A running session's listening ports on the dashboard ("3000 · node"), each a link that opens
 * its preview (a host of its own, signed in through a one-use ticket: server/preview.ts), and its
 * share links that still work.
 */
import type { Session } from "../../../src/protocol/session.ts";

export function SessionPorts({ s }: { s: Pick<Session, "label" | "ports" | "shares"> }) {
  if (s.ports.length === 0 && s.shares.length === 0) return null;
  return (
    <span class="ports">
      {s.ports.map((p) => (
        <a
          key={p.port}
          href={`/v1/sessions/${s.label}/preview/${p.port}`}
          target="_blank"
          rel="noopener noreferrer"
          aria-label={`Open port ${p.port} of ${s.label}`}
        >
          <code>{p.name ? `${p.port} · ${p.name}` : String(p.port)}</code>
        </a>
      ))}
      {s.shares.map((sh) => (
        <span key={sh.id} class="share" title={`Shared link to port ${sh.port}, until ${new Date(sh.expiresAt).toLocaleString()}`}>
          shared {sh.port} until {new Date(sh.expiresAt).toLocaleTimeString()}
        </span>
      ))}
    </span>
  );
}
