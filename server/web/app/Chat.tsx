/** @jsxImportSource preact */
/** Chat mode: the program's replies as bubbles (read from the terminal's screen model by chat.ts), what it asks as cards, a message box, quick keys. */
import { useEffect, useRef, useState } from "preact/hooks";
import type { Terminal } from "@xterm/xterm";
import { chatBubbles, cursorLine, screenLines, type Bubble, type Sent } from "./chat.ts";
import { SessionRequests } from "./Inbox.tsx";

const QUICK: Array<[string, string, string]> = [
  ["y", "y", "y"],
  ["n", "n", "n"],
  ["1", "1", "1"],
  ["2", "2", "2"],
  ["↑", "\x1b[A", "Up"],
  ["↓", "\x1b[B", "Down"],
  ["Enter", "\r", "Enter"],
  ["Esc", "\x1b", "Escape"],
  ["^C", "\x03", "Control-C"],
];

export function Chat({ label, term, send, version }: { label: string; term: Terminal | null; send(data: string): void; version: number }) {
  const [draft, setDraft] = useState("");
  const sent = useRef<Sent[]>([]);
  const end = useRef<HTMLDivElement>(null);
  let bubbles: Bubble[] = [];
  if (term) {
    const { lines, screenTop } = screenLines(term);
    bubbles = chatBubbles(lines, screenTop, sent.current);
  }
  useEffect(() => end.current?.scrollIntoView({ block: "end" }), [version, bubbles.length]);
  const submit = (): void => {
    if (!term) return;
    sent.current.push({ text: draft, line: cursorLine(term) });
    send(`${draft}\r`);
    setDraft("");
  };
  return (
    <div class="chat">
      <div class="bubbles" role="log" aria-label="Conversation">
        {bubbles.map((b) => <div class={`bubble ${b.from}`}>{b.text}</div>)}
        <SessionRequests label={label} />
        <div ref={end} />
      </div>
      <div class="quick" role="toolbar" aria-label="Quick actions">
        {QUICK.map(([text, seq, name]) => <button type="button" aria-label={name} onClick={() => send(seq)}>{text}</button>)}
      </div>
      <form class="compose" onSubmit={(e) => { e.preventDefault(); submit(); }}>
        <textarea aria-label="Message" rows={2} value={draft} onInput={(e) => setDraft(e.currentTarget.value)}
          onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); } }} />
        <button type="submit">Send</button>
      </form>
    </div>
  );
}
