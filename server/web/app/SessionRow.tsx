/** @jsxImportSource preact */
/** One session in the list: its state, region and age, why it ended, its latest save, Stop. */
import { isLive, regionName, type Session } from "../../../src/protocol/session.ts";
import { ago } from "../../../src/lib/format.ts";
import { SessionPorts } from "./SessionPorts.tsx";

export function SessionRow({ s, onStop }: { s: Session; onStop(label: string): void }) {
  const running = isLive(s.status);
  const waiting = running && s.attention?.state === "waiting";
  return (
    <li class={`session ${running ? "running" : "stopped"}`} aria-label={`Session ${s.label}`}>
      <span class={`dot ${running ? "green" : "gray"}`} aria-hidden="true" />
      <a href={`/s/${s.label}`} class="label">{s.label}</a>
      <span class="status">{s.status}</span>
      {waiting && <strong class="waiting">waiting for you · {ago(s.attention?.since ?? s.createdAt).replace(" ago", "")}</strong>}
      <span class="region">{regionName(s.region)}</span>
      {running && <SessionPorts s={s} />}
      <span class="created">{ago(s.createdAt)}</span>
      {!running && s.endReason && <span class="reason">{s.endReason}</span>}
      {!running && s.saves[0] && <a href={`/v1/sessions/${s.label}/saves/latest/download`}>latest save (tar.gz)</a>}
      {running && (
        <button type="button" class="danger" onClick={() => confirm(`Stop session ${s.label}? Its files stay downloadable.`) && onStop(s.label)}>
          Stop
        </button>
      )}
    </li>
  );
}
