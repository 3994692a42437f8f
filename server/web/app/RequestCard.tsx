/** @jsxImportSource preact */
/**
 * One request Claude Code waits on: the session, the tool, the command (or the file and its diff,
 * the URL), and **Allow** / **Deny** / **Always allow**. Once settled it says how: by this page,
 * or elsewhere (another device, the CLI, the terminal).
 */
import { useState } from "preact/hooks";
import type { PendingRequest, RequestAnswer, SettledHow } from "../../../src/protocol/inbox.ts";
import { api } from "./api.ts";

const SETTLED: Record<SettledHow, string> = {
  allow: "Allowed",
  deny: "Denied",
  terminal: "Answered in the terminal",
  ended: "The session ended",
};

export function RequestCard({ r, settled, showLabel = true }: { r: PendingRequest; settled: SettledHow | null; showLabel?: boolean }) {
  const [mine, setMine] = useState<SettledHow | null>(null);
  const [error, setError] = useState<string | null>(null);
  const done = mine ?? settled;
  const answer = async (a: RequestAnswer): Promise<void> => {
    try {
      const res = await api.answer(r.label, r.id, a);
      setMine(res.behavior);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <li class={`request${done ? " settled" : ""}`} aria-label={`Request ${r.id}`}>
      <div class="request-head">
        {showLabel && <a href={`/s/${encodeURIComponent(r.label)}`}>{r.label}</a>}
        <span class="tool">{r.tool}</span>
        {r.description && <span class="description">{r.description}</span>}
      </div>
      {r.command && <pre class="command">{r.command}</pre>}
      {r.path && !r.diff && <pre class="command">{r.path}</pre>}
      {r.url && <pre class="command">{r.url}</pre>}
      {r.diff && (
        <pre class="diff" aria-label="Proposed change">
          {r.diff.split("\n").map((line) => <span class={line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : ""}>{line}{"\n"}</span>)}
        </pre>
      )}
      {r.truncated && <p class="hint">(cut to 64 KB)</p>}
      {done ? (
        <p role="status" class="answered">{SETTLED[done]}</p>
      ) : (
        <div class="actions">
          <button type="button" onClick={() => void answer({ behavior: "allow" })}>Allow</button>
          <button type="button" onClick={() => void answer({ behavior: "deny" })}>Deny</button>
          <button type="button" onClick={() => void answer({ behavior: "allow", always: true })}>Always allow</button>
        </div>
      )}
      {error && <p role="alert" class="error">{error}</p>}
    </li>
  );
}
