/**
 * Local attach: puts the user's terminal in full raw mode (`raw-mode.ts`) and joins it to a
 * session. Every key goes to the program (a single Ctrl+C too); Ctrl+C twice within a second
 * detaches. The terminal is restored on every way out: detach, program exit, takeover, error,
 * signal, process exit.
 */
import { CattyError, type ClientMode } from "../protocol/index.ts";
import { homedir } from "node:os";
import { formatBytes } from "../lib/archive.ts";
import type { ApiClient } from "./api.ts";
import type { Log } from "../lib/log.ts";
import { Display } from "./display.ts";
import { DetachDetector } from "./keys.ts";
import { describeDetachKeys, EscapeKeys } from "./escape-keys.ts";
import { droppableFiles, PasteCatcher, pastedPaths, readDroppedFile, uploadAnswer, type DroppedFile } from "./paste-files.ts";
import { CursorReportReader } from "./local-screen.ts";
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
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
}

export type AttachResult =
  | { kind: "detached" }
  | { kind: "signal"; signal: NodeJS.Signals }
  | Outcome;

/** How long to wait for the terminal to report its cursor position (it takes milliseconds). */
const CURSOR_REPORT_MS = 1_500;

/** Every way to detach, for the "Detach with …" line: `Enter ~ . or Ctrl+C twice` (and the detach keys). */
export function detachHint(detachKeys: Uint8Array | null): string {
  return `${detachKeys ? `${describeDetachKeys(detachKeys)}, ` : ""}Enter ~ . or Ctrl+C twice`;
}

/** A path as a terminal types a dropped one: spaces and shell characters escaped with `\`. */
function escapePath(path: string): string {
  return path.replace(/[^A-Za-z0-9_./~+-]/g, (c) => `\\${c}`);
}

/** What `~?` shows. */
function escapeHelp(detachKeys: Uint8Array | null): string {
  return `escapes (after Enter): ~. detach · ~~ a literal ~ · ~? this list${detachKeys ? ` · ${describeDetachKeys(detachKeys)} detach` : ""} · Ctrl+C twice detach`;
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
  const detector = new DetachDetector();
  const escapes = new EscapeKeys(opts.detachKeys ?? null);
  const size = (): { cols: number; rows: number } => ({
    cols: Math.max(1, stdout.columns || 80),
    rows: Math.max(1, stdout.rows || 24),
  });
  const display = new Display({ out: stdout, size, repaint: () => link.repaint() });

  if (opts.syncBack) opts.syncBack.onNotice = (m) => display.notice(m);
  let toldViewOnly = false;
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
      status: (message) => display.status(message),
      attached() {
        display.status(""); // back: the reconnect notice goes
      },
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
    const held = cursor.giveUp();
    located();
    if (held.length > 0) input(held);
  }, CURSOR_REPORT_MS);

  const deliver = (bytes: Uint8Array): void => {
    const escaped = escapes.feed(bytes);
    if (escaped.help) display.notice(escapeHelp(opts.detachKeys ?? null));
    const { forward, detach } = detector.feed(escaped.forward);
    if (forward.length > 0) link.send(forward);
    if (detach || escaped.detach) resolveLocal({ kind: "detached" });
  };
  // Files dropped on the terminal go to the session first; input after them waits its turn.
  const pastes = new PasteCatcher();
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
  const input = (bytes: Uint8Array): void => {
    for (const ev of pastes.feed(bytes)) {
      if (ev.kind === "bytes") {
        after(() => deliver(ev.data));
        continue;
      }
      const paths = opts.mode === "interactive" ? pastedPaths(ev.text) : null;
      const found = paths ? droppableFiles(paths, { home: homedir(), cattyHome: opts.cattyHome }) : null;
      if (found && "refused" in found) {
        after(() => {
          display.notice(`not uploading: ${found.refused}; pasted the text`);
          deliver(ev.raw);
        });
      } else after(found ? () => offerFiles(found.files, ev.raw) : () => deliver(ev.raw));
    }
  };
  /** The answer to the open question, fed the input while it is shown. */
  let answer: ((bytes: Uint8Array) => void) | null = null;
  /** Asks once, with the full paths, whether to upload; Enter uploads, Esc pastes the text. */
  const offerFiles = async (files: DroppedFile[], raw: Uint8Array): Promise<void> => {
    const what = files.length === 1 ? "this file" : `these ${files.length} files`;
    const question = [`upload ${what} to the session? Enter uploads · Esc pastes the text`, ...files.map((f) => `  ${f.path}  (${formatBytes(f.size)})`)];
    // Nothing is uploaded that the question could not show.
    if (!display.questionFits(question)) {
      display.notice(`${files.length} files are more than this terminal can show at once: pasted the text; drop fewer at a time`);
      deliver(raw);
      return;
    }
    const upload = await new Promise<boolean>((resolve) => {
      answer = (bytes) => {
        const said = uploadAnswer(bytes);
        if (said === null) return;
        answer = null;
        display.endQuestion();
        resolve(said === "upload");
      };
      display.ask(question);
    });
    if (upload) await handFiles(files, raw);
    else deliver(raw);
  };
  /** Uploads the dropped files and pastes their remote paths; on failure, the local paths as pasted. */
  const handFiles = async (files: DroppedFile[], raw: Uint8Array): Promise<void> => {
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
      deliver(raw);
      return;
    }
    display.status("");
    deliver(new TextEncoder().encode(`\x1b[200~${remote.map(escapePath).join(" ")}\x1b[201~`));
  };
  const onData = (chunk: unknown): void => {
    let bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Uint8Array);
    if (cursor.waiting) {
      const rest = cursor.feed(bytes);
      if (rest === null) return;
      located();
      if (rest.length === 0) return;
      bytes = rest;
    }
    if (answer) return answer(bytes);
    input(bytes);
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
    cursor.giveUp();
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
