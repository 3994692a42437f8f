import { describe, expect, test } from "bun:test";
import { Program, type ProgramOptions } from "../../agent/program.ts";
import { silentLog } from "../../src/lib/log.ts";
import type { AgentToServer } from "../../src/protocol/index.ts";
import { FakePty } from "../helpers/fake-pty.ts";
import { waitFor } from "../helpers/wait.ts";

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function setup(opts: { pty?: FakePty; graceMs?: number; up?: () => boolean } = {}) {
  const pty = opts.pty ?? new FakePty();
  const sent: AgentToServer[] = [];
  const printed: string[] = [];
  const wrapped: number[] = [];
  const options: ProgramOptions = {
    pty: pty.runner,
    argv: ["my-program", "--flag"],
    cwd: "/workspace",
    env: () => ({ TERM: "xterm-256color" }),
    size: () => ({ cols: 100, rows: 30 }),
    output: (data) => printed.push(new TextDecoder().decode(data)),
    wrapUp: async (code) => {
      wrapped.push(code);
      return { finalSave: "stored", screen: "last screen" };
    },
    send: (msg) => {
      if (opts.up && !opts.up()) return false;
      sent.push(msg);
      return true;
    },
    log: silentLog,
    graceMs: opts.graceMs ?? 60,
  };
  return { program: new Program(options), pty, sent, printed, wrapped };
}

describe("the program's lifecycle", () => {
  test("starts under the PTY with the command, directory, environment and size", () => {
    const { program, pty } = setup();
    program.start();
    expect(pty.proc.spec).toMatchObject({ argv: ["my-program", "--flag"], cwd: "/workspace", env: { TERM: "xterm-256color" }, cols: 100, rows: 30 });
    expect(program.pid).toBe(pty.proc.pid);
    program.start();
    expect(pty.procs).toHaveLength(1);
  });

  test("input typed before the program starts reaches it first, in order", () => {
    const { program, pty } = setup();
    program.write(bytes("ls"));
    program.write(bytes(" -la"));
    program.write(bytes("\r"));
    program.start();
    program.write(bytes("exit\r"));
    expect(pty.proc.typed).toBe("ls -la\rexit\r");
  });

  test("typeahead is dropped when the program will never start", () => {
    const { program, pty } = setup();
    program.write(bytes("lost"));
    program.abandon();
    program.start();
    expect(pty.procs).toHaveLength(0);
    expect(program.started).toBe(false);
  });

  test("whenStarted: waits for the start (a file handed during the restore), says false when it never comes", async () => {
    const { program } = setup();
    const waiting = program.whenStarted(60_000);
    program.start();
    expect(await waiting).toBe(true);
    expect(await program.whenStarted(0)).toBe(true);
    const never = setup().program;
    const abandoned = never.whenStarted(60_000);
    never.abandon();
    expect(await abandoned).toBe(false);
    expect(await setup().program.whenStarted(10)).toBe(false); // nothing happens: given up after the wait
  });

  test("a stop sends SIGHUP, and SIGKILL after the grace when the program ignores it", async () => {
    const { program, pty } = setup({ pty: new FakePty({ ignoreHangup: true }), graceMs: 80 });
    program.start();
    const started = performance.now();
    program.stop("catty stop");
    expect(pty.proc.signals).toEqual(["SIGHUP"]);
    program.stop("again"); // a second stop does not signal again
    expect(await program.exited).toBe(137);
    expect(pty.proc.signals).toEqual(["SIGHUP", "SIGKILL"]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(75);
    const report = await program.reported;
    expect(report.reason).toBe("catty stop");
  });

  test("a program that ends on SIGHUP gets no SIGKILL", async () => {
    const { program, pty } = setup({ graceMs: 30 });
    program.start();
    program.stop("idle");
    expect(await program.exited).toBe(129);
    await Bun.sleep(60); // past the grace: the kill timer must have been cancelled
    expect(pty.proc.signals).toEqual(["SIGHUP"]);
  });

  test("a stop before the start stops the program as soon as it starts", async () => {
    const { program, pty } = setup();
    program.stop("session ended early");
    program.start();
    expect(pty.proc.signals).toEqual(["SIGHUP"]);
    expect((await program.reported).reason).toBe("session ended early");
  });

  test("a program that cannot start is reported as exit 127, with a message on the screen", async () => {
    const { program, printed, wrapped } = setup({ pty: new FakePty({ failWith: "No such file or directory" }) });
    program.start();
    expect(await program.exited).toBe(127);
    expect(printed.join("")).toContain("catty: could not start my-program: No such file or directory");
    expect((await program.reported).code).toBe(127);
    expect(wrapped).toEqual([127]);
  });

  test("after the exit: the final save, then the report; sent again on every reconnect until acknowledged", async () => {
    let up = false;
    const { program, pty, sent, wrapped } = setup({ up: () => up });
    program.start();
    program.resend(); // nothing to report yet
    expect(sent).toEqual([]);
    pty.proc.exit(3);
    const report = await program.reported;
    expect(wrapped).toEqual([3]);
    expect(report).toEqual({ type: "exit", code: 3, reason: null, screen: "last screen", finalSave: "stored" });
    expect(sent).toEqual([]); // the link was down when it was made
    up = true;
    program.resend();
    program.resend();
    expect(sent).toEqual([report, report]);
    program.acknowledge();
    program.resend();
    expect(sent).toHaveLength(2);
  });

  test("input after the exit goes nowhere", async () => {
    const { program, pty } = setup();
    program.start();
    pty.proc.exit(0);
    await waitFor(() => program.exitReport, { what: "the exit report" });
    program.write(bytes("late"));
    expect(pty.proc.typed).toBe("");
  });
});
