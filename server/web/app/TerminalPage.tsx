/** @jsxImportSource preact */
/**
 * A session's terminal (xterm.js, fitted to the page) on the attach link, with a status bar
 * (Connected, Connecting, Disconnected and why, **Retry**), View only, file uploads (the picker or
 * a drop: each file goes to .catty-uploads/ and its path is typed), the key bar of touch screens
 * and chat mode.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { WebglAddon } from "@xterm/addon-webgl";
import { Terminal } from "@xterm/xterm";
import { FILE_TYPES, fileProblem } from "../../../src/protocol/files.ts";
import { shellWord } from "../../../src/lib/format.ts";
import { api } from "./api.ts";
import { Chat } from "./Chat.tsx";
import { BrowserLink, type LinkState } from "./link.ts";
import { PredictedTerminal } from "./predicted-terminal.ts";
import type { PredictMode } from "../../../src/lib/predict.ts";
import { notifyWaiting } from "./notify.ts";

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

/** The dashboard's prediction setting (as `--predict` / `CATTY_PREDICT`), kept in this browser. */
const PREDICT_KEY = "catty.predict";
const PREDICT_MODES: PredictMode[] = ["auto", "always", "never"];
function storedPredictMode(): PredictMode {
  return storedModeOf(localStorage.getItem(PREDICT_KEY) ?? "");
}

export function TerminalPage({ label }: { label: string }) {
  const [predictMode, setPredictMode] = useState<PredictMode>(storedPredictMode);
  const [rtt, setRtt] = useState<number | null>(null);
  const predicted = useRef<PredictedTerminal | null>(null);
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
    // The characters drawn underlined on the screen (predictions not confirmed yet), for tests.
    (box.current as HTMLDivElement & { underlinedText?: () => string }).underlinedText = () => {
      const b = term.buffer.active;
      let out = "";
      for (let y = 0; y < term.rows; y++) {
        const line = b.getLine(b.baseY + y);
        for (let x = 0; line && x < term.cols; x++) {
          const c = line.getCell(x);
          if (c?.isUnderline()) out += c.getChars() || " ";
        }
      }
      return out;
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
    const shown = new PredictedTerminal(term, storedPredictMode(), parsed);
    predicted.current = shown;
    // Predictions judged so far, for tests and benchmarks.
    (box.current as HTMLDivElement & { predictions?: () => { confirmed: number; contradicted: number; keyToModelMs: number[] } }).predictions = () => ({
      confirmed: shown.predictor.confirmedCount,
      contradicted: shown.predictor.contradictedCount,
      keyToModelMs: [...shown.keyToModelMs],
    });
    const l = new BrowserLink(label, view, {
      output: (data) => shown.output(data),
      screen: (data) => shown.screen(data),
      rtt: (ms) => {
        shown.predictor.rtt(ms);
        setRtt(ms);
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
    const input = term.onData((d) => {
      if (!view) shown.typed(d);
      l.input(d);
    });
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
      shown.dispose();
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
        <span role="status" class="state" title={roundTripText(rtt, predicted.current)}>{text}</span>
        {state.kind !== "connected" && "reason" in state && state.reason && <span class="reason">{state.reason}</span>}
        {state.kind === "disconnected" && <button type="button" onClick={() => link.current?.reconnect()}>Retry</button>}
        <label class="toggle"><input type="checkbox" checked={view} onChange={(e) => setView(e.currentTarget.checked)} /> View only</label>
        {typeof Notification !== "undefined" && Notification.permission === "default" && (
          <button type="button" onClick={() => void Notification.requestPermission()}>Notify me</button>
        )}
        <button type="button" disabled={view || state.kind !== "connected"} onClick={() => picker.current?.click()}>Upload</button>
        <input ref={picker} type="file" multiple hidden aria-label="Files to upload" accept={FILE_TYPES.map((t) => `.${t}`).join(",")}
          onChange={(e) => { const l = e.currentTarget.files; if (l?.length) void hand([...l]); e.currentTarget.value = ""; }} />
        <label class="toggle" title="Predictive echo: what you type shows at once, underlined until the program echoes it">
          Echo{" "}
          <select aria-label="Predictive echo" value={predictMode} onChange={(e) => {
            const mode = storedModeOf(e.currentTarget.value);
            localStorage.setItem(PREDICT_KEY, mode);
            setPredictMode(mode);
            if (predicted.current) predicted.current.predictor.mode = mode;
          }}>
            {PREDICT_MODES.map((m) => <option value={m}>{m}</option>)}
          </select>
        </label>
        <button type="button" aria-pressed={keysShown} onClick={() => setKeysShown(!keysShown)}>Keyboard</button>
        <button type="button" aria-pressed={chat} onClick={() => setChat(!chat)}>{chat ? "Terminal" : "Chat"}</button>
      </div>
      {(files || filesError) && (
        <div class="files">
          {files && <span role="status" aria-label="Uploads">{files}</span>}
          {filesError && <span role="alert">{filesError}</span>}
        </div>
      )}
      {chat && <Chat label={label} term={termRef.current} send={(d) => link.current?.input(d)} version={version} />}
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

function storedModeOf(v: string): PredictMode {
  return PREDICT_MODES.find((m) => m === v) ?? "auto";
}

/** The status bar's hover: the round trip and whether prediction draws. */
function roundTripText(rtt: number | null, shown: PredictedTerminal | null): string {
  const p = shown?.predictor;
  const state = !p || p.mode === "never" ? "off" : p.active ? "on" : `off below ${p.thresholdMs} ms`;
  return `round trip ${rtt === null ? "not measured yet" : `${Math.round(rtt)} ms`} · predictive echo ${state}`;
}
