/**
 * `catty inbox` on a terminal: every request Claude Code waits on across the user's sessions,
 * refreshed every 2 s — session, tool, age, the command (or the file and the first lines of its
 * diff, the URL) — with keys to allow (a), deny (d), always allow (A), open the session (o, Enter)
 * and quit (q, Esc, Ctrl+C). Resolves to the session to open, or null.
 */
import { Box, render, Text, useInput } from "ink";
import { useEffect, useState } from "react";
import { ago } from "../../lib/format.ts";
import type { PendingRequest, RequestAnswer } from "../../protocol/index.ts";

export interface InboxIo {
  load(): Promise<PendingRequest[]>;
  answer(r: PendingRequest, a: RequestAnswer): Promise<string>;
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function Card({ r, selected, now }: { r: PendingRequest; selected: boolean; now: number }) {
  const what = r.command || r.url || r.path || r.description;
  const diff = r.diff ? r.diff.split("\n").slice(2, 8) : [];
  return (
    <Box flexDirection="column" marginBottom={1}>
      <Box>
        <Text color={selected ? "cyan" : undefined}>{selected ? "❯ " : "  "}</Text>
        <Text bold={selected}>{r.label}</Text>
        <Text> {r.tool}</Text>
        <Text dimColor> {ago(r.createdAt, now)} · {r.id}</Text>
      </Box>
      <Text wrap="truncate-end">{"    "}{what.replace(/\s+/g, " ")}</Text>
      {diff.map((line) => (
        <Text color={line.startsWith("+") ? "green" : line.startsWith("-") ? "red" : undefined} wrap="truncate-end">{"    "}{line}</Text>
      ))}
    </Box>
  );
}

export function runInboxList(io: InboxIo, first: PendingRequest[]): Promise<{ open: string | null; interrupted: boolean }> {
  return new Promise((resolve) => {
    let finished = false;
    function App() {
      const [requests, setRequests] = useState(first);
      const [at, setAt] = useState(0);
      const [message, setMessage] = useState<string | null>(null);
      const [now, setNow] = useState(Date.now());
      useEffect(() => {
        const t = setInterval(() => {
          setNow(Date.now());
          io.load().then(setRequests, (err: unknown) => setMessage(`Could not refresh: ${messageOf(err)}`));
        }, 2_000);
        return () => clearInterval(t);
      }, []);
      const selected = requests[Math.min(at, requests.length - 1)];
      const answer = (a: RequestAnswer): void => {
        if (!selected) return;
        io.answer(selected, a).then(
          (said) => {
            setMessage(said);
            setRequests((rs) => rs.filter((r) => r.id !== selected.id));
          },
          (err: unknown) => setMessage(messageOf(err)),
        );
      };
      useInput((input, key) => {
        if (key.upArrow || input === "k") setAt((i) => Math.max(0, i - 1));
        else if (key.downArrow || input === "j") setAt((i) => Math.min(requests.length - 1, i + 1));
        else if (input === "a") answer({ behavior: "allow" });
        else if (input === "A") answer({ behavior: "allow", always: true });
        else if (input === "d") answer({ behavior: "deny" });
        else if ((input === "o" || key.return) && selected) done(selected.label, false);
        else if (input === "q" || key.escape) done(null, false);
        else if (key.ctrl && input === "c") done(null, true);
      });
      return (
        <Box flexDirection="column">
          {requests.length === 0 ? <Text>Nothing waits for an answer.</Text> : requests.map((r) => <Card r={r} selected={r === selected} now={now} />)}
          {message && <Text color="yellow">{message}</Text>}
          <Text dimColor>a allow · d deny · A always allow · o open · ↑↓ move · q quit</Text>
        </Box>
      );
    }
    const app = render(<App />, { exitOnCtrlC: false, patchConsole: false });
    const exited = app.waitUntilExit();
    function done(open: string | null, interrupted: boolean): void {
      if (finished) return;
      finished = true;
      app.unmount();
      void exited.then(() => resolve({ open, interrupted }));
    }
  });
}
