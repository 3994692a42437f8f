/** @jsxImportSource preact */
/**
 * The list: the sessions (running first, green; stopped below, gray) with their attention state,
 * **Refresh** (and every 30 s), **New session** in a region for a duration, the inbox (a badge in
 * the header), and the tab's title counting what asks, else the sessions that wait.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { isLive, type Session } from "../../../src/protocol/session.ts";
import { api } from "./api.ts";
import { notifyWaiting } from "./notify.ts";
import { SessionRow } from "./SessionRow.tsx";
import { Inbox } from "./Inbox.tsx";
import { Devices } from "./Devices.tsx";
import { registerWorker } from "./push.ts";

export function Dashboard({ user }: { user: string }) {
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [hours, setHours] = useState(2);
  const [regions, setRegions] = useState<Array<{ id: string; name: string }>>([]);
  const [region, setRegion] = useState<string | null>(null);
  const [asking, setAsking] = useState(0);
  const [waitingCount, setWaitingCount] = useState(0);
  const waitingBefore = useRef<Set<string> | null>(null);
  const refresh = async (): Promise<void> => {
    try {
      const list = await api.sessions();
      setSessions(list);
      setError(null);
      const waiting = list.filter((s) => s.status === "running" && s.attention?.state === "waiting").map((s) => s.label);
      setWaitingCount(waiting.length);
      // A notification for each session that started waiting since the last look.
      if (waitingBefore.current) for (const l of waiting) if (!waitingBefore.current.has(l)) notifyWaiting(l);
      waitingBefore.current = new Set(waiting);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void registerWorker();
    void refresh();
    void api.config().then((c) => {
      setRegions(c.regions);
      setRegion((r) => r ?? c.regions[0]?.id ?? null);
    }, (err: Error) => setError(err.message));
    const t = setInterval(() => void refresh(), 30_000);
    return () => clearInterval(t);
  }, []);
  // The tab's title: what asks (the inbox), else how many sessions wait.
  useEffect(() => {
    document.title = asking > 0 ? `(${asking}) asking · Catty` : waitingCount > 0 ? `(${waitingCount}) waiting · Catty` : "Catty";
  }, [asking, waitingCount]);
  const live = (sessions ?? []).filter((s) => isLive(s.status));
  const ended = (sessions ?? []).filter((s) => !isLive(s.status));
  return (
    <main>
      <header>
        <h1>Catty</h1>
        <span class="user">{user}</span>
        <a href="#inbox" class="inbox-link">Inbox{asking > 0 && <span class="badge" aria-label={`${asking} waiting for an answer`}>{asking}</span>}</a>
        <button type="button" onClick={() => void refresh()}>Refresh</button>
        <button type="button" onClick={async () => { await api.signOut(); location.href = "/"; }}>Sign out</button>
      </header>
      <section class="new">
        <label for="region">Region</label>
        <select id="region" value={region ?? ""} onChange={(e) => setRegion(e.currentTarget.value)}>
          {regions.map((r) => <option value={r.id}>{r.name}</option>)}
        </select>
        <label for="duration">Duration</label>
        <select id="duration" value={hours} onChange={(e) => setHours(Number(e.currentTarget.value))}>
          {[1, 2, 3, 4, 5, 6, 7, 8].map((h) => <option value={h}>{h} h</option>)}
        </select>
        <button
          type="button"
          onClick={async () => {
            try {
              const s = await api.create(hours * 3_600_000, region ?? undefined);
              location.href = `/s/${s.label}`;
            } catch (err) {
              setError((err as Error).message);
            }
          }}
        >
          New session
        </button>
      </section>
      {error && <p role="alert" class="error">{error}</p>}
      <Devices />
      <Inbox onCount={setAsking} />
      {sessions === null ? <p>Loading…</p> : sessions.length === 0 ? <p>No sessions yet. Start one here, or with <code>catty new</code>.</p> : null}
      <ul class="sessions" aria-label="Running sessions">{live.map((s) => <SessionRow s={s} onStop={async (l) => { await api.stop(l); await refresh(); }} />)}</ul>
      <ul class="sessions" aria-label="Stopped sessions">{ended.map((s) => <SessionRow s={s} onStop={() => {}} />)}</ul>
    </main>
  );
}
