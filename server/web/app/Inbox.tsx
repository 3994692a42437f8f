/** @jsxImportSource preact */
/**
 * The inbox: what Claude Code waits on across the user's sessions (or one session's, in chat
 * mode), polled every 3 s. A card that leaves the inbox stays, saying how it was settled.
 */
import { useEffect, useState } from "preact/hooks";
import type { PendingRequest, SettledHow } from "../../../src/protocol/inbox.ts";
import { api } from "./api.ts";
import { RequestCard } from "./RequestCard.tsx";

/** Polls the inbox: the requests shown (pending, and those settled since they were shown) and how each settled. */
export function useInbox(label: string | null, onCount?: (n: number) => void): { shown: PendingRequest[]; how: Map<string, SettledHow> } {
  const [shown, setShown] = useState<PendingRequest[]>([]);
  const [how, setHow] = useState(new Map<string, SettledHow>());
  useEffect(() => {
    let seen: PendingRequest[] = [];
    let stopped = false;
    const poll = async (): Promise<void> => {
      try {
        const pending = (await api.inbox()).filter((r) => label === null || r.label === label);
        onCount?.(pending.length);
        const ids = new Set(pending.map((r) => r.id));
        const gone = seen.filter((r) => !ids.has(r.id));
        if (gone.length > 0) {
          const settled = new Map((await api.settled()).map((s) => [s.id, s.how] as const));
          setHow((before) => new Map([...before, ...gone.flatMap((r) => (settled.has(r.id) ? [[r.id, settled.get(r.id) as SettledHow] as const] : []))]));
        }
        seen = [...seen.filter((r) => !ids.has(r.id)), ...pending];
        if (!stopped) setShown(seen);
      } catch {
        // The next poll tries again.
      }
    };
    void poll();
    const t = setInterval(() => void poll(), 3_000);
    return () => {
      stopped = true;
      clearInterval(t);
    };
  }, [label]);
  return { shown, how };
}

export function Inbox({ onCount }: { onCount(n: number): void }) {
  const { shown, how } = useInbox(null, onCount);
  return (
    <section class="inbox" id="inbox" aria-label="Inbox">
      <h2>Inbox</h2>
      {shown.length === 0 ? <p>Nothing waits for an answer.</p> : <ul class="requests">{shown.map((r) => <RequestCard r={r} settled={how.get(r.id) ?? null} />)}</ul>}
    </section>
  );
}

/** One session's requests, as cards in chat mode. */
export function SessionRequests({ label }: { label: string }) {
  const { shown, how } = useInbox(label);
  if (shown.length === 0) return null;
  return <ul class="requests" aria-label="Requests">{shown.map((r) => <RequestCard r={r} settled={how.get(r.id) ?? null} showLabel={false} />)}</ul>;
}
