/**
 * A programmatic client that keeps everything a session sent it: a real `SessionLink` (the one
 * the CLI uses, with its offset bookkeeping and reconnects) whose output bytes, screens, status
 * lines and outcome are recorded, so tests can check every byte a client received.
 */
import { silentLog } from "../../src/lib/log.ts";
import type { ClientMode } from "../../src/protocol/index.ts";
import { SessionLink, type Outcome } from "../../src/client/session-link.ts";
import { waitFor } from "./wait.ts";

export interface RecorderOptions {
  /** The attach WebSocket URL (`ApiClient.attachUrl`). */
  url: string;
  token: string;
  mode?: ClientMode;
  /** 0: everything since the session started; null: the current screen. */
  offset?: number | null;
  autoReconnect?: boolean;
  cols?: number;
  rows?: number;
  /** Keep the output text (default true; off for long heavy streams, where `onOutput` counts). */
  keepText?: boolean;
  /** Called with every output chunk on arrival (after it is recorded). */
  onOutput?(data: Uint8Array, at: number): void;
}

export class Recorder {
  readonly link: SessionLink;
  readonly outcome: Promise<Outcome>;
  /** Output bytes, decoded (Latin-1, one char per byte, so `text.length` counts bytes). */
  private out = "";
  private outBytes = 0;
  /** Screens received (a new client, or one too far behind for a replay). */
  readonly screens: Array<{ data: string; offset: number; at: number }> = [];
  readonly statuses: string[] = [];
  attachedCount = 0;
  viewOnlyCount = 0;
  /** Offsets where output arrived not exactly where the previous output ended. */
  readonly gaps: Array<{ expected: number; got: number }> = [];
  private ended: Outcome | null = null;

  constructor(opts: RecorderOptions) {
    const cols = opts.cols ?? 100;
    const rows = opts.rows ?? 30;
    let expectAt: number | null = opts.offset === undefined ? 0 : opts.offset;
    this.link = new SessionLink(
      {
        url: opts.url,
        token: opts.token,
        mode: opts.mode ?? "interactive",
        offset: opts.offset === undefined ? 0 : opts.offset,
        size: () => ({ cols, rows }),
        autoReconnect: opts.autoReconnect ?? true,
        log: silentLog,
      },
      {
        output: (data) => {
          const at = performance.now();
          // The link hands over each byte once; the offset it reaches tells where this chunk began.
          const end = this.link.offset ?? 0;
          const start = end - data.length;
          if (expectAt !== null && start !== expectAt) this.gaps.push({ expected: expectAt, got: start });
          expectAt = end;
          if (opts.keepText !== false) this.out += Buffer.from(data).toString("latin1");
          this.outBytes += data.length;
          opts.onOutput?.(data, at);
        },
        screen: (data) => {
          this.screens.push({ data, offset: this.link.offset ?? 0, at: performance.now() });
          expectAt = this.link.offset;
        },
        status: (message) => {
          this.statuses.push(message);
        },
        attached: () => {
          this.attachedCount++;
        },
        viewOnly: () => {
          this.viewOnlyCount++;
        },
      },
    );
    this.outcome = this.link.start().then((o) => (this.ended = o));
  }

  /** Output received so far (Latin-1). */
  get text(): string {
    return this.out;
  }

  get bytes(): number {
    return this.outBytes;
  }

  /** Stream offset received up to (null before anything arrived). */
  get offset(): number | null {
    return this.link.offset;
  }

  get outcomeNow(): Outcome | null {
    return this.ended;
  }

  send(text: string): void {
    this.link.send(new TextEncoder().encode(text));
  }

  /** Waits until the output received so far (screens not included) passes `check`. */
  waitForText(check: string | RegExp | ((text: string) => boolean), timeoutMs = 15_000, what?: string): Promise<string> {
    const test =
      typeof check === "string" ? (t: string) => t.includes(check) : check instanceof RegExp ? (t: string) => check.test(t) : check;
    return waitFor(
      () => {
        if (this.ended && !test(this.out)) throw new Error(`the link ended: ${JSON.stringify(this.ended)}`);
        return test(this.out) ? this.out : null;
      },
      { timeoutMs, what: what ?? `${check} in the output` },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- last 400 bytes received ---\n${JSON.stringify(this.out.slice(-400))}`);
    });
  }

  close(): void {
    this.link.close();
  }
}

/**
 * Checks that `text` is exactly the lines `first`..`last` (CRLF, as a PTY prints them), each once
 * and in order; returns null when it is, else where it first goes wrong.
 */
export function checkSeq(text: string, last: number, first = 1): string | null {
  let at = 0;
  for (let n = first; n <= last; n++) {
    const line = `${n}\r\n`;
    if (!text.startsWith(line, at)) {
      const got = text.slice(at, at + 60);
      return `line ${n} expected at byte ${at}, got ${JSON.stringify(got)} (after ${JSON.stringify(text.slice(Math.max(0, at - 40), at))})`;
    }
    at += line.length;
  }
  return at === text.length ? null : `${text.length - at} extra bytes after line ${last}: ${JSON.stringify(text.slice(at, at + 60))}`;
}

/** The highest `seq` line fully received so far (0 if none). */
export function lastSeqLine(text: string): number {
  const end = text.lastIndexOf("\r\n");
  if (end < 0) return 0;
  const n = Number(text.slice(text.lastIndexOf("\n", end - 1) + 1, end));
  return Number.isInteger(n) ? n : 0;
}

/**
 * A shell command printing `seq 1 lines` in `batches` equal batches with `pauseS` between them (so
 * the output runs for a while and a fault can land in the middle of it), then sleeping on quietly.
 */
export function pacedSeq(lines: number, batches: number, pauseS: number): string {
  const per = Math.ceil(lines / batches);
  return `for b in $(seq 0 ${batches - 1}); do s=$((b*${per}+1)); e=$(((b+1)*${per})); [ $e -gt ${lines} ] && e=${lines}; seq $s $e; sleep ${pauseS}; done; sleep 600`;
}
