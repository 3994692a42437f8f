/** @jsxImportSource preact */
/**
 * The dashboard, served by catty-server on its own port: sign in with a token, the sessions
 * (running first, green; stopped below, gray) with their attention state, **Refresh** (and every
 * 30 s), **New session**, **Stop** with a confirmation; a session's terminal (xterm.js) with a
 * status bar and **Retry**; and `/device`, where a signed-in user approves a `catty login --device`.
 */
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { WebglAddon } from "@xterm/addon-webgl";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import "./style.css";
import { regionName, type Session } from "../../../src/protocol/session.ts";
import { FILE_TYPES, fileProblem } from "../../../src/protocol/files.ts";
import type { DeviceRequest } from "../../../src/protocol/web.ts";
import { api, ApiError } from "./api.ts";
import { chatBubbles, cursorLine, screenLines, type Bubble, type Sent } from "./chat.ts";
import { BrowserLink, type LinkState } from "./link.ts";

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}


function SignIn({ onSignedIn }: { onSignedIn(user: string): void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <main class="narrow">
      <h1>Catty</h1>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            onSignedIn(await api.signIn(token.trim()));
          } catch (err) {
            setError(err instanceof ApiError && err.hint ? `${err.message} ${err.hint}` : (err as Error).message);
          }
        }}
      >
        <label for="token">API token</label>
        <input id="token" type="password" autocomplete="off" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit">Sign in</button>
        {error && <p role="alert" class="error">{error}</p>}
        <p class="hint">Get a token with <code>catty-server token create --user NAME</code> on the server.</p>
      </form>
    </main>
  );
}

function SessionRow({ s, onStop }: { s: Session; onStop(label: string): void }) {
  const running = s.status === "running" || s.status === "starting" || s.status === "stopping";
  const waiting = running && s.attention?.state === "waiting";
  return (
    <li class={`session ${running ? "running" : "stopped"}`} aria-label={`Session ${s.label}`}>
      <span class={`dot ${running ? "green" : "gray"}`} aria-hidden="true" />
      <a href={`/s/${s.label}`} class="label">{s.label}</a>
      <span class="status">{s.status}</span>
      {waiting && <strong class="waiting">waiting for you · {ago(s.attention?.since ?? s.createdAt).replace(" ago", "")}</strong>}
      <span class="region">{regionName(s.region)}</span>
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

function Dashboard({ user }: { user: string }) {
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [hours, setHours] = useState(2);
  const [regions, setRegions] = useState<Array<{ id: string; name: string }>>([]);
  const [region, setRegion] = useState<string | null>(null);
  const waitingBefore = useRef<Set<string> | null>(null);
  const refresh = async (): Promise<void> => {
    try {
      const list = await api.sessions();
      setSessions(list);
      setError(null);
      const waiting = list.filter((s) => s.status === "running" && s.attention?.state === "waiting").map((s) => s.label);
      document.title = waiting.length > 0 ? `(${waiting.length}) waiting · Catty` : "Catty";
      // A notification for each session that started waiting since the last look.
      if (waitingBefore.current) for (const l of waiting) if (!waitingBefore.current.has(l)) notifyWaiting(l);
      waitingBefore.current = new Set(waiting);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void refresh();
    void api.config().then((c) => {
      setRegions(c.regions);
      setRegion((r) => r ?? c.regions[0]?.id ?? null);
    }, (err: Error) => setError(err.message));
    const t = setInterval(() => void refresh(), 30_000);
    return () => clearInterval(t);
  }, []);
  const live = (sessions ?? []).filter((s) => ["starting", "running", "stopping"].includes(s.status));
  const ended = (sessions ?? []).filter((s) => !["starting", "running", "stopping"].includes(s.status));
  return (
    <main>
      <header>
        <h1>Catty</h1>
        <span class="user">{user}</span>
        <button type="button" onClick={() => void refresh()}>Refresh</button>
        {typeof Notification !== "undefined" && Notification.permission === "default" && (
          <button type="button" onClick={() => void Notification.requestPermission()}>Notify me</button>
        )}
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
      {sessions === null ? <p>Loading…</p> : sessions.length === 0 ? <p>No sessions yet. Start one here, or with <code>catty new</code>.</p> : null}
      <ul class="sessions" aria-label="Running sessions">{live.map((s) => <SessionRow s={s} onStop={async (l) => { await api.stop(l); await refresh(); }} />)}</ul>
      <ul class="sessions" aria-label="Stopped sessions">{ended.map((s) => <SessionRow s={s} onStop={() => {}} />)}</ul>
    </main>
  );
}

/** The virtual key bar of touch screens: keys a phone's keyboard does not have. */
const KEYS: Array<[string, string, string]> = [
  ["ESC", "\x1b", "Escape"],
  ["TAB", "\t", "Tab"],
  ["^C", "\x03", "Control-C"],
  ["^D", "\x04", "Control-D"],
  ["^Z", "\x1a", "Control-Z"],
  ["^L", "\x0c", "Control-L"],
  ["←", "\x1b[D", "Left"],
  ["↑", "\x1b[A", "Up"],
  ["↓", "\x1b[B", "Down"],
  ["→", "\x1b[C", "Right"],
  ["⌫", "\x7f", "Backspace"],
  ["⏎", "\r", "Enter"],
];

/** Asks once for the browser's permission to notify, then says when the session waits. */
function notifyWaiting(label: string): void {
  if (typeof Notification === "undefined" || Notification.permission !== "granted" || document.hasFocus()) return;
  new Notification(`${label} is waiting for you`, { body: "Catty", tag: `catty-${label}` });
}

/** Chat mode: the program's replies as bubbles (read from the terminal's screen model), a message box, quick keys. */
function Chat({ term, send, version }: { term: Terminal | null; send(data: string): void; version: number }) {
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

/** `path` as one shell word: as is when it is plain, else in single quotes. */
function shellWord(path: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`;
}

function TerminalPage({ label }: { label: string }) {
  const [keysShown, setKeysShown] = useState(window.matchMedia("(pointer: coarse)").matches);
  const [chat, setChat] = useState(window.matchMedia("(max-width: 600px)").matches);
  const [version, setVersion] = useState(0);
  const termRef = useRef<Terminal | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<LinkState>({ kind: "connecting", reason: null });
  const [view, setView] = useState(false);
  const link = useRef<BrowserLink | null>(null);
  useEffect(() => {
    const term = new Terminal({ scrollback: 10_000, cursorBlink: true, screenReaderMode: true, theme: { background: "#111418", foreground: "#e6e6e6" }, fontFamily: "ui-monospace, Menlo, monospace" });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.loadAddon(new WebLinksAddon());
    term.open(box.current as HTMLDivElement);
    termRef.current = term;
    // An event on the box once output is in the terminal's model, for tests and benchmarks.
    const parsed = (): void => void box.current?.dispatchEvent(new Event("terminal-output"));
    // What is on the screen, for tests and benchmarks (the screen-reader rows lag up to a second).
    (box.current as HTMLDivElement & { screenText?: () => string }).screenText = () => {
      const b = term.buffer.active;
      const lines: string[] = [];
      for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? "");
      return lines.join("\n");
    };
    // Chat mode re-reads the screen model after output lands (a frame at most).
    let pending = false;
    const written = term.onWriteParsed(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        setVersion((v) => v + 1);
      });
    });
    try {
      const webgl = new WebglAddon();
      webgl.onContextLoss(() => webgl.dispose());
      term.loadAddon(webgl);
    } catch {
      // no WebGL here: the DOM renderer stays
    }
    fit.fit();
    const l = new BrowserLink(label, view, {
      output: (data) => term.write(data, parsed),
      screen: (data) => {
        term.reset();
        term.write(data, parsed);
      },
      state: setState,
      attention: (s) => {
        if (s === "waiting") {
          document.title = `waiting · ${label}`;
          notifyWaiting(label);
        } else document.title = label;
      },
    });
    link.current = l;
    const input = term.onData((d) => l.input(d));
    const onResize = (): void => {
      fit.fit();
      l.resize(term.cols, term.rows);
    };
    window.addEventListener("resize", onResize);
    window.addEventListener("orientationchange", onResize);
    document.title = label;
    l.start(term.cols, term.rows);
    term.focus();
    return () => {
      window.removeEventListener("resize", onResize);
      window.removeEventListener("orientationchange", onResize);
      input.dispose();
      written.dispose();
      l.close();
      term.dispose();
    };
  }, [label, view]);
  const [files, setFiles] = useState<string | null>(null);
  const [filesError, setFilesError] = useState<string | null>(null);
  const picker = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);
  /** Uploads each file into the session's .catty-uploads/ and types the paths it got, as a terminal does for dropped files. */
  const hand = async (list: FileList | File[]): Promise<void> => {
    const checked = [...list].map((f) => ({ f, problem: fileProblem(f.name, f.size) }));
    const refused = checked.flatMap((c) => (c.problem ? [c.problem] : []));
    const ok = checked.flatMap((c) => (c.problem ? [] : [c.f]));
    setFilesError(refused.length > 0 ? refused.join(" ") : null);
    const paths: string[] = [];
    for (const [i, f] of ok.entries()) {
      const which = ok.length > 1 ? ` (${i + 1} of ${ok.length})` : "";
      try {
        setFiles(`Uploading ${f.name}${which}…`);
        const { path } = await api.putFile(label, f, (x) => setFiles(`Uploading ${f.name}${which}… ${Math.round(x * 100)} %`));
        paths.push(path);
      } catch (err) {
        setFilesError((e) => [e, (err as Error).message].filter(Boolean).join(" "));
      }
    }
    setFiles(paths.length > 0 ? `Uploaded to ${paths.join(", ")}` : null);
    if (paths.length > 0) link.current?.input(`${paths.map(shellWord).join(" ")} `);
    termRef.current?.focus();
  };
  const text = state.kind === "connected" ? "Connected" : state.kind === "connecting" ? "Connecting" : "Disconnected";
  return (
    <div
      class={dragging ? "term-page dragging" : "term-page"}
      onDragOver={(e) => {
        if (view || !e.dataTransfer?.types.includes("Files")) return;
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        setDragging(false);
        if (view || !e.dataTransfer?.files.length) return;
        e.preventDefault();
        void hand(e.dataTransfer.files);
      }}
    >
      <div class={`statusbar ${state.kind}`}>
        <a href="/">← Sessions</a>
        <span class="name">{label}</span>
        <span role="status" class="state">{text}</span>
        {state.kind !== "connected" && "reason" in state && state.reason && <span class="reason">{state.reason}</span>}
        {state.kind === "disconnected" && <button type="button" onClick={() => link.current?.reconnect()}>Retry</button>}
        <label class="toggle"><input type="checkbox" checked={view} onChange={(e) => setView(e.currentTarget.checked)} /> View only</label>
        {typeof Notification !== "undefined" && Notification.permission === "default" && (
          <button type="button" onClick={() => void Notification.requestPermission()}>Notify me</button>
        )}
        <button type="button" disabled={view || state.kind !== "connected"} onClick={() => picker.current?.click()}>Upload</button>
        <input ref={picker} type="file" multiple hidden aria-label="Files to upload" accept={FILE_TYPES.map((t) => `.${t}`).join(",")}
          onChange={(e) => { const l = e.currentTarget.files; if (l?.length) void hand([...l]); e.currentTarget.value = ""; }} />
        <button type="button" aria-pressed={keysShown} onClick={() => setKeysShown(!keysShown)}>Keyboard</button>
        <button type="button" aria-pressed={chat} onClick={() => setChat(!chat)}>{chat ? "Terminal" : "Chat"}</button>
      </div>
      {(files || filesError) && (
        <div class="files">
          {files && <span role="status" aria-label="Uploads">{files}</span>}
          {filesError && <span role="alert">{filesError}</span>}
        </div>
      )}
      {chat && <Chat term={termRef.current} send={(d) => link.current?.input(d)} version={version} />}
      <div class={chat ? "term hidden" : "term"} ref={box} />
      {keysShown && !chat && (
        <div class="keybar" role="toolbar" aria-label="Keys">
          {KEYS.map(([text, seq, name]) => (
            <button type="button" aria-label={name} onPointerDown={(e) => e.preventDefault()} onClick={() => link.current?.input(seq)}>
              {text}
            </button>
          ))}
        </div>
      )}
    </div>
  );
}

/**
 * Approving a `catty login`: the person types the code their terminal shows (a link never fills
 * it in, so a link someone else sent approves nothing), then sees who asked — address, program,
 * time — before approving or denying.
 */
function DevicePage({ user }: { user: string }) {
  const [code, setCode] = useState("");
  const [request, setRequest] = useState<DeviceRequest | null>(null);
  const [result, setResult] = useState<string | null>(null);
  const look = async (): Promise<void> => {
    setResult(null);
    try {
      setRequest(await api.device(code));
    } catch (err) {
      setResult((err as Error).message);
    }
  };
  const answer = async (approve: boolean): Promise<void> => {
    if (!request) return;
    try {
      await api.approve(request.userCode, approve);
      setRequest(null);
      setResult(approve ? "Approved: your terminal is signed in." : "Denied.");
    } catch (err) {
      setResult((err as Error).message);
    }
  };
  return (
    <main class="narrow">
      <h1>Sign in a terminal</h1>
      <p>Signed in as {user}. Type the code your terminal shows.</p>
      <label for="code">Code</label>
      <input id="code" value={code} onInput={(e) => (setCode(e.currentTarget.value), setRequest(null))} autocomplete="off" />
      <button type="button" onClick={() => void look()}>Continue</button>
      {request && (
        <section aria-label="Login request">
          <p>
            A terminal asked to sign in as {user} with code <strong>{request.userCode}</strong>. Approve only if this is
            your terminal and it asked just now.
          </p>
          <dl>
            <dt>From</dt>
            <dd>{request.requester.address ?? "unknown"}</dd>
            <dt>Program</dt>
            <dd>{request.requester.userAgent ?? "unknown"}</dd>
            <dt>Asked at</dt>
            <dd>{new Date(request.createdAt).toLocaleString()}</dd>
          </dl>
          <button type="button" onClick={() => void answer(true)}>Approve</button>
          <button type="button" class="danger" onClick={() => void answer(false)}>Deny</button>
        </section>
      )}
      {result && <p role="status">{result}</p>}
    </main>
  );
}

function App() {
  const [user, setUser] = useState<string | null | undefined>(undefined);
  useEffect(() => {
    void api.me().then((me) => setUser(me?.user ?? null));
  }, []);
  if (user === undefined) return <p>Loading…</p>;
  if (user === null) return <SignIn onSignedIn={(u) => (location.pathname === "/" ? setUser(u) : location.reload())} />;
  const path = location.pathname;
  if (path.startsWith("/s/")) return <TerminalPage label={decodeURIComponent(path.slice(3))} />;
  if (path === "/device") return <DevicePage user={user} />;
  return <Dashboard user={user} />;
}

render(<App />, document.getElementById("app") as HTMLElement);
