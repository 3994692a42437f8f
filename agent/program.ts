/**
 * The program's lifecycle under its PTY: input typed before it starts is kept and handed over in
 * order; a stop sends SIGHUP and, if the program is still there after a grace period, SIGKILL.
 * After it exits, `wrapUp` makes the final save and takes the last screen, and the exit report
 * goes to the server — again on every reconnect, until the server acknowledges it.
 */
import type { Log } from "../src/lib/log.ts";
import type { AgentToServer } from "../src/protocol/index.ts";
import type { PtyProcess, PtyRunner } from "./pty.ts";

export type ExitReport = Extract<AgentToServer, { type: "exit" }>;

/** How long a stopped program gets between SIGHUP and SIGKILL. */
export const STOP_GRACE_MS = 5_000;
/** Exit code reported for a program that could not be started, as shells do. */
const NOT_STARTED = 127;

export interface ProgramOptions {
  pty: PtyRunner;
  argv: string[];
  cwd: string;
  /** The program's environment, read when it starts. */
  env: () => Record<string, string>;
  /** The terminal size when the program starts. */
  size(): { cols: number; rows: number };
  /** The program's output (also where a failure to start is told to the user). */
  output(data: Uint8Array): void;
  /** After the exit: stop watching the workspace, make the final save, take the last screen. */
  wrapUp(code: number): Promise<Pick<ExitReport, "finalSave" | "screen">>;
  /** Puts a message on the link; false when the link is down. */
  send(msg: AgentToServer): boolean;
  log: Log;
  /** Between SIGHUP and SIGKILL (default `STOP_GRACE_MS`). */
  graceMs?: number;
}

type State = "waiting" | "running" | "exited" | "abandoned";

export class Program {
  private state: State = "waiting";
  private proc: PtyProcess | null = null;
  private readonly typeahead: Uint8Array[] = [];
  private stopReason: string | null = null;
  private killing = false;
  private report: ExitReport | null = null;
  private acknowledged = false;
  private resolveExited: (code: number) => void = () => {};
  private resolveReported: (report: ExitReport) => void = () => {};
  /** The program's exit code, once it has exited (never settles if it never starts). */
  readonly exited = new Promise<number>((resolve) => (this.resolveExited = resolve));
  /** The exit report, once the final save is done. */
  readonly reported = new Promise<ExitReport>((resolve) => (this.resolveReported = resolve));
  private resolveStarted: (started: boolean) => void = () => {};
  /** True once the program has started; false if it never will (the workspace could not be restored). */
  private readonly startedOrNot = new Promise<boolean>((resolve) => (this.resolveStarted = resolve));

  constructor(private readonly opts: ProgramOptions) {}

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get started(): boolean {
    return this.state !== "waiting" && this.state !== "abandoned";
  }

  /** Input for the program; kept (in order) until it starts, dropped once it cannot take any. */
  write(data: Uint8Array): void {
    if (this.state === "running") this.proc?.write(data);
    else if (this.state === "waiting") this.typeahead.push(data);
  }

  resize(cols: number, rows: number): void {
    this.proc?.resize(cols, rows);
  }

  /** The program will never start (the workspace could not be restored): drop the typeahead. */
  abandon(): void {
    if (this.state !== "waiting") return;
    this.state = "abandoned";
    this.typeahead.length = 0;
    this.resolveStarted(false);
  }

  /** Waits (up to `timeoutMs`) for the program to start: false when it did not (or never will). */
  whenStarted(timeoutMs: number): Promise<boolean> {
    if (this.started) return Promise.resolve(true);
    let timer: Timer | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    return Promise.race([this.startedOrNot, late]).finally(() => clearTimeout(timer));
  }

  /** Starts the program under its PTY (once). A program that cannot start exits with 127. */
  start(): void {
    if (this.state !== "waiting") return;
    this.state = "running";
    this.resolveStarted(true);
    const { argv, log } = this.opts;
    try {
      const { cols, rows } = this.opts.size();
      this.proc = this.opts.pty({ argv, cwd: this.opts.cwd, env: this.opts.env(), cols, rows, onData: this.opts.output });
      log.info("program started", { argv, pid: this.proc.pid });
      for (const data of this.typeahead.splice(0)) this.proc.write(data);
      void this.proc.exited.then((code) => this.onExit(code));
    } catch (err) {
      this.opts.output(new TextEncoder().encode(`catty: could not start ${argv[0]}: ${(err as Error).message}\r\n`));
      log.error("program failed to start", { argv, err });
      this.typeahead.length = 0;
      void Promise.resolve().then(() => this.onExit(NOT_STARTED));
    }
    if (this.stopReason !== null) this.stop(this.stopReason);
  }

  /** Ends the program: SIGHUP, then SIGKILL after the grace. Before it starts, it stops as soon as it does. */
  stop(reason: string): void {
    this.stopReason ??= reason;
    const proc = this.proc;
    if (!proc || this.killing || this.state !== "running") return;
    this.killing = true;
    this.opts.log.info("stopping program", { reason });
    proc.kill("SIGHUP");
    const timer = setTimeout(() => {
      this.opts.log.warn("program still running after SIGHUP; killing it", { pid: proc.pid });
      proc.kill("SIGKILL");
    }, this.opts.graceMs ?? STOP_GRACE_MS);
    void this.exited.then(() => clearTimeout(timer));
  }

  /** The exit report, once the program exited and the final save is done. */
  get exitReport(): ExitReport | null {
    return this.report;
  }

  /** On every (re)connect: the exit report again, until the server acknowledges it. */
  resend(): void {
    if (this.report && !this.acknowledged) this.opts.send(this.report);
  }

  /** The server recorded the exit: no more resending. */
  acknowledge(): void {
    this.acknowledged = true;
  }

  private async onExit(code: number): Promise<void> {
    this.state = "exited";
    this.resolveExited(code);
    const wrapped = await this.opts.wrapUp(code).catch((err: unknown) => {
      this.opts.log.error("could not wrap up after the program exited", { err });
      return { finalSave: `failed: ${(err as Error).message}`, screen: "" };
    });
    this.report = { type: "exit", code, reason: this.stopReason, ...wrapped };
    this.opts.log.info("program exited", { code, finalSave: wrapped.finalSave });
    this.opts.send(this.report);
    this.resolveReported(this.report);
  }
}
