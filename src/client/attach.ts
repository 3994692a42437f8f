/**
 * Local attach: puts the user's terminal in full raw mode (`raw-mode.ts`) and joins it to a
 * session. Every key goes to the program (a single Ctrl+C too); Ctrl+C twice within a second
 * detaches. The terminal is restored on every way out: detach, program exit, takeover, error,
 * signal, process exit.
 */
import { CattyError, type ClientMode } from "../protocol/index.ts";
import type { ApiClient } from "./api.ts";
import type { Log } from "../lib/log.ts";
import { DetachDetector } from "./keys.ts";
import { ModeTracker } from "./modes.ts";
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
  stdin?: NodeJS.ReadStream;
  stdout?: NodeJS.WriteStream;
}

export type AttachResult =
  | { kind: "detached" }
  | { kind: "signal"; signal: NodeJS.Signals }
  | Outcome;

/** Status shown only if a problem lasts longer than this, so brief blips stay invisible. */
const STATUS_DELAY_MS = 500;
/** How long a notice stays on the bottom line before the screen is repainted. */
const NOTICE_MS = 3000;

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
  const modes = new ModeTracker();
  const detector = new DetachDetector();
  const size = (): { cols: number; rows: number } => ({
    cols: Math.max(1, stdout.columns || 80),
    rows: Math.max(1, stdout.rows || 24),
  });

  // The status line is drawn over the program's bottom row; once it goes, the screen is repainted
  // from the agent's mirror, so nothing of the program's screen is lost.
  let statusShown = false;
  let statusTimer: Timer | undefined;
  const drawStatus = (message: string): void => {
    const { cols, rows } = size();
    const text = ` catty: ${message} `.slice(0, cols);
    stdout.write(`\x1b7\x1b[${rows};1H\x1b[2K\x1b[7m${text}\x1b[0m\x1b8`);
    statusShown = true;
  };
  const clearStatus = (): void => {
    clearTimeout(statusTimer);
    if (!statusShown) return;
    statusShown = false;
    stdout.write(`\x1b7\x1b[${size().rows};1H\x1b[2K\x1b8`);
    link.repaint();
  };
  const showStatus = (message: string): void => {
    clearTimeout(statusTimer);
    if (!message) return clearStatus();
    statusTimer = setTimeout(() => drawStatus(message), STATUS_DELAY_MS);
  };
  const notice = (message: string): void => {
    clearTimeout(statusTimer);
    drawStatus(message);
    statusTimer = setTimeout(clearStatus, NOTICE_MS);
  };

  if (opts.syncBack) opts.syncBack.onNotice = (m) => notice(m);
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
      output(data) {
        modes.feed(data);
        stdout.write(data);
      },
      screen(data) {
        // Modes of what was on screen (vim's alternate screen…) are undone first: the new screen
        // switches on its own, and the tracker knows only those from here on.
        stdout.write(`${modes.restoreSequence()}\x1b[H\x1b[2J${data}`);
        modes.reset();
        modes.feed(data);
      },
      status: showStatus,
      attached() {
        showStatus(""); // back: the reconnect notice goes, and the screen is repainted
      },
      viewOnly() {
        if (toldViewOnly) return;
        toldViewOnly = true;
        notice("view only: your input is not sent");
      },
      sync(event) {
        const writer = opts.syncBack;
        if (!writer) return;
        const first = event.kind === "start" && !writer.active;
        writer.event(event);
        if (first) notice(`sync-back on: the session's changes appear in ${process.cwd()}`);
      },
      syncBytes(transfer, data) {
        opts.syncBack?.bytes(transfer, data);
      },
    },
  );

  let resolveLocal: (r: AttachResult) => void = () => {};
  const local = new Promise<AttachResult>((resolve) => (resolveLocal = resolve));

  const onData = (chunk: unknown): void => {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Uint8Array);
    const { forward, detach } = detector.feed(bytes);
    if (forward.length > 0) link.send(forward);
    if (detach) resolveLocal({ kind: "detached" });
  };
  const onResize = (): void => {
    const { cols, rows } = size();
    link.resize(cols, rows);
  };
  const signals: NodeJS.Signals[] = ["SIGTERM", "SIGHUP", "SIGQUIT"];
  const onSignal = (signal: NodeJS.Signals): void => resolveLocal({ kind: "signal", signal });
  let raw: RawMode | null = null;
  const restore = (): void => {
    clearTimeout(statusTimer);
    try {
      stdout.write(modes.restoreSequence());
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
