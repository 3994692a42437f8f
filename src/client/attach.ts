/**
 * Local attach: puts the user's terminal in full raw mode (`raw-mode.ts`) and joins it to a
 * session. What the user types is read once into events (`input.ts`); the cursor report, the
 * upload question, pasted files and the ways to detach (`detach.ts`) take theirs, and every other
 * key goes to the program (a single Ctrl+C too). The terminal is restored on every way out: detach, program exit, takeover, error,
 * signal, process exit.
 */
import { CattyError, type ClientMode } from "../protocol/index.ts";
import { homedir } from "node:os";
import { formatBytes } from "../lib/archive.ts";
import type { ApiClient } from "./api.ts";
import type { Log } from "../lib/log.ts";
import { Display } from "./display.ts";
import { Detacher, escapeHelp } from "./detach.ts";
import { InputReader, pasteEvent, type InputEvent } from "./input.ts";
import type { PredictMode } from "../lib/predict.ts";
import { droppableFiles, pastedPaths, readDroppedFile, uploadAnswer, type DroppedFile } from "./paste-files.ts";
import { CursorReportReader } from "./cursor-report.ts";
import { enterRawMode, type RawMode } from "./raw-mode.ts";
import { SessionLink, type Outcome } from "./session-link.ts";
import type { SyncBackWriter } from "./sync-back.ts";

export interface AttachOptions {
  client: ApiClient;
  label: string;
  mode: ClientMode;
  /** 0: everything since the session started (a new session); null: the current screen. */
  offset: number | null;
  autoReconnect: boolean;
  log: Log;
  /** Applies sync-back events under the current directory; null: sync-back off. */
  syncBack?: SyncBackWriter | null;
  /** Docker-style detach keys (`--detach-keys`), besides Enter ~ . and Ctrl+C twice. */
  detachKeys?: Uint8Array | null;
  /** `$CATTY_HOME`: a pasted path in it is never uploaded. */
  cattyHome: string;
  /** Predictive local echo (`--predict`); default never. */
  predict?: PredictMode;
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
}

export type AttachResult =
  | { kind: "detached" }
  | { kind: "signal"; signal: NodeJS.Signals }
  | Outcome;

/** The status line's word on what is typed while the link is down. */
const HELD = "(what you type is held, and sent once it is back)";

/** How long to wait for the terminal to report its cursor position (it takes milliseconds). */
const CURSOR_REPORT_MS = 1_500;
/** How long the rest of an escape sequence cut by a read may take (the terminal wrote it at once). */
const SEQUENCE_REST_MS = 50;

/** The round trip and the prediction, as `~?` lists them. */
export function roundTrip(rttMs: number | null, predicting: string): string {
  return `round trip ${rttMs === null ? "not measured yet" : `${Math.round(rttMs)} ms`} · prediction ${predicting}`;
}

/** A path as a terminal types a dropped one: spaces and shell characters escaped with `\`. */
function escapePath(path: string): string {
  return path.replace(/[^A-Za-z0-9_./~+-]/g, (c) => `\\${c}`);
}

export function requireTty(stdin: NodeJS.ReadStream = process.stdin): void {
  if (!stdin.isTTY) {
    throw new CattyError(
      "bad_request",
      "catty needs an interactive terminal, but stdin is not a terminal.",
      "Run it from a terminal (or in tmux/ssh -t); `catty list`, `catty stop` and `catty download` work in scripts.",
    );
  }
}

export async function attachTerminal(opts: AttachOptions): Promise<AttachResult> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  requireTty(stdin);
  const detacher = new Detacher({ detachKeys: opts.detachKeys });
  const size = (): { cols: number; rows: number } => ({
    cols: Math.max(1, stdout.columns || 80),
    rows: Math.max(1, stdout.rows || 24),
  });
  const display = new Display({ out: stdout, size, repaint: () => link.repaint(), predict: opts.predict });

  if (opts.syncBack) opts.syncBack.onNotice = (m) => display.notice(m);
  let toldViewOnly = false;
  /** The link is down: input is held (up to 64 KB) and sent once it is back. */
  let down = false;
  let toldHeld = false;
  const link = new SessionLink(
    {
      url: opts.client.attachUrl(opts.label),
      token: opts.client.token,
      mode: opts.mode,
      offset: opts.offset,
      size,
      autoReconnect: opts.autoReconnect,
      log: opts.log,
      syncPosition: () => opts.syncBack?.position ?? null,
    },
    {
      output: (data) => display.output(data),
      screen: (data) => display.paint(data),
      status: (message) => display.status(message && down && toldHeld ? `${message} ${HELD}` : message),
      attached() {
        down = false;
        toldHeld = false;
        display.offline(false);
        display.status(""); // back: the reconnect notice goes
      },
      lost() {
        down = true;
        display.offline(true);
      },
      rtt: (ms) => display.rtt(ms),
      attention(a) {
        // Viewers: the program waits for its user (who is not attached) — say so once per wait, with a bell.
        if (a.state === "waiting") {
          process.stdout.write("\x07");
          display.notice(`${opts.label} is waiting for input`);
        }
      },
      viewOnly() {
        if (toldViewOnly) return;
        toldViewOnly = true;
        display.notice("view only: your input is not sent");
      },
      sync(event) {
        const writer = opts.syncBack;
        if (!writer) return;
        const first = event.kind === "start" && !writer.active;
        writer.event(event);
        if (first) display.notice(`sync-back on: the session's changes appear in ${process.cwd()}`);
      },
      syncBytes(transfer, data) {
        opts.syncBack?.bytes(transfer, data);
      },
    },
  );

  let resolveLocal: (r: AttachResult) => void = () => {};
  const local = new Promise<AttachResult>((resolve) => (resolveLocal = resolve));

  // Where the cursor is, so the local mirror of the screen lines up with the terminal. Input is
  // held until the terminal answers (within milliseconds), or gives up after a while.
  const cursor = new CursorReportReader();
  const located = (): void => {
    clearTimeout(cursorTimer);
    display.anchor(cursor.position);
  };
  const cursorTimer = setTimeout(() => {
    const held = cursor.release();
    located();
    if (held.length > 0) input(held);
  }, CURSOR_REPORT_MS);

  /** Input events through the ways to detach; what is left goes to the program, in one frame. */
  const deliver = (events: InputEvent[]): void => {
    const { forward, detach, help } = detacher.take(events);
    if (help) display.notice(`${escapeHelp(opts.detachKeys ?? null)} · ${roundTrip(link.rttMs, display.predicting)}`);
    if (forward.length > 0) {
      display.typed(forward);
      link.send(forward);
      if (down && !toldHeld) {
        toldHeld = true;
        display.status(`Connection lost; reconnecting… ${HELD}`);
      }
    }
    if (detach) resolveLocal({ kind: "detached" });
  };
  // Files dropped on the terminal go to the session first; input after them waits its turn.
  let busy: Promise<void> | null = null;
  /** Runs `step` now when nothing waits, else after what waits; an async step makes later input wait. */
  const after = (step: () => void | Promise<void>): void => {
    const started = busy ? busy.then(step) : step();
    if (!started) return;
    const next: Promise<void> = started.finally(() => {
      if (busy === next) busy = null;
    });
    busy = next;
  };
  const input = (events: InputEvent[]): void => {
    let keys: InputEvent[] = [];
    const flushKeys = (): void => {
      if (keys.length === 0) return;
      const batch = keys;
      keys = [];
      after(() => deliver(batch));
    };
    for (const ev of events) {
      if (ev.kind !== "paste") {
        keys.push(ev);
        continue;
      }
      flushKeys();
      const paths = opts.mode === "interactive" ? pastedPaths(ev.text) : null;
      const found = paths ? droppableFiles(paths, { home: homedir(), cattyHome: opts.cattyHome }) : null;
      if (found && "refused" in found) {
        after(() => {
          display.notice(`not uploading: ${found.refused}; pasted the text`);
          deliver([ev]);
        });
      } else after(found ? () => offerFiles(found.files, ev) : () => deliver([ev]));
    }
    flushKeys();
  };
  /** The answer to the open question, fed the input while it is shown; true once answered. */
  let answer: ((ev: InputEvent) => boolean) | null = null;
  /** Asks once, with the full paths, whether to upload; Enter uploads, Esc pastes the text. */
  const offerFiles = async (files: DroppedFile[], paste: InputEvent): Promise<void> => {
    const what = files.length === 1 ? "this file" : `these ${files.length} files`;
    const question = [`upload ${what} to the session? Enter uploads · Esc pastes the text`, ...files.map((f) => `  ${f.path}  (${formatBytes(f.size)})`)];
    // Nothing is uploaded that the question could not show.
    if (!display.questionFits(question)) {
      display.notice(`${files.length} files are more than this terminal can show at once: pasted the text; drop fewer at a time`);
      deliver([paste]);
      return;
    }
    const upload = await new Promise<boolean>((resolve) => {
      answer = (ev) => {
        // Keys answer (the Escape key too, when a read ends with its ESC); a paste does not.
        const said = ev.kind === "paste" || ev.kind === "pasting" || ev.kind === "cursor" ? null : uploadAnswer(ev.raw);
        if (said === null) return false;
        answer = null;
        display.endQuestion();
        resolve(said === "upload");
        return true;
      };
      display.ask(question);
    });
    if (upload) await handFiles(files, paste);
    else deliver([paste]);
  };
  /** Uploads the dropped files and pastes their remote paths; on failure, the local paths as pasted. */
  const handFiles = async (files: DroppedFile[], paste: InputEvent): Promise<void> => {
    const remote: string[] = [];
    try {
      for (const [i, f] of files.entries()) {
        const which = files.length > 1 ? ` (${i + 1} of ${files.length})` : "";
        let shown = -1;
        const progress = (sent: number): void => {
          const pct = f.size > 0 ? Math.floor((sent / f.size) * 100) : 100;
          if (pct === shown) return;
          shown = pct;
          display.status(`Uploading ${f.name}${which}… ${pct} %`);
        };
        progress(0);
        remote.push((await opts.client.putFile(opts.label, f.name, readDroppedFile(f), progress)).path);
      }
    } catch (err) {
      display.status("");
      display.notice(`could not upload ${files.length === 1 ? "the file" : "the files"} (${(err as Error).message}); pasted the local path instead`);
      deliver([paste]);
      return;
    }
    display.status("");
    deliver([pasteEvent(remote.map(escapePath).join(" "))]);
  };
  const reader = new InputReader();
  let restTimer: Timer | undefined;
  /** The events of one read. */
  const read = (events: InputEvent[]): void => {
    if (cursor.waiting) {
      const rest = cursor.take(events);
      if (rest === null) return;
      located();
      events = rest;
    }
    if (events.length === 0) return;
    // While a question is open, input answers it or goes; the rest of the read that answered goes
    // with the answer (an Enter may come as CR LF).
    if (answer) events.some(answer);
    else input(events);
  };
  const onData = (chunk: unknown): void => {
    clearTimeout(restTimer);
    read(reader.feed(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Uint8Array)));
    if (reader.holding) restTimer = setTimeout(() => read(reader.flush()), SEQUENCE_REST_MS);
  };
  const onResize = (): void => {
    const { cols, rows } = size();
    display.resize(cols, rows);
    link.resize(cols, rows);
  };
  const signals: NodeJS.Signals[] = ["SIGTERM", "SIGHUP", "SIGQUIT"];
  const onSignal = (signal: NodeJS.Signals): void => resolveLocal({ kind: "signal", signal });
  let raw: RawMode | null = null;
  const restore = (): void => {
    clearTimeout(cursorTimer);
    clearTimeout(restTimer);
    display.dispose();
    try {
      stdout.write(display.restoreSequence());
    } catch {
      // the terminal may already be gone (hang-up)
    }
    raw?.restore();
  };

  raw = enterRawMode(stdin, opts.log);
  stdin.resume();
  stdin.on("data", onData);
  stdout.on("resize", onResize);
  for (const s of signals) process.on(s, onSignal);
  process.on("exit", restore);
  if (stdout.isTTY) stdout.write("\x1b[6n");
  else {
    cursor.release();
    located();
  }
  try {
    const result = await Promise.race([link.start(), local]);
    link.close();
    await opts.syncBack?.flush();
    return result;
  } finally {
    stdin.off("data", onData);
    stdout.off("resize", onResize);
    for (const s of signals) process.off(s, onSignal);
    process.off("exit", restore);
    stdin.pause();
    restore();
  }
}
