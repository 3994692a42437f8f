/**
 * The basic end-to-end flow of a session, shared by the local and Docker provider tests: in a
 * tmux terminal logged in to a server, `catty new` runs bash; typing reaches it, the PTY follows
 * a resize, vim draws its screen, Ctrl+C twice detaches (exit 0, the session runs on),
 * `catty connect` finds the same shell, and the program's exit code becomes catty's.
 */
import { expect } from "bun:test";
import type { Tmux } from "./tmux.ts";
import { waitFor } from "./wait.ts";

export interface SessionFlowDeps {
  statusOf(label: string): string | undefined | Promise<string | undefined>;
  exitCodeOf(label: string): number | null | undefined | Promise<number | null | undefined>;
}

/** Runs a command in the tmux shell and returns its exit code, printed behind a marker. */
export async function shellExitCode(tmux: Tmux, marker: string, timeoutMs = 15_000): Promise<number> {
  const re = new RegExp(`${marker}=(\\d+)`);
  const screen = await tmux.waitFor(re, timeoutMs);
  return Number(re.exec(screen)?.[1]);
}

/** Resolves to the session's label once it has stopped with exit code 7. */
export async function sessionFlow(tmux: Tmux, deps: SessionFlowDeps): Promise<string> {
  tmux.type("catty new --no-upload -- bash --norc --noprofile; echo CATTY_EXIT=$?");
  const started = await tmux.waitFor(/Session ([a-z]+-[a-z]+-\d{4}) started/, 30_000);
  const label = /Session ([a-z]+-[a-z]+-\d{4}) started/.exec(started)?.[1] as string;
  await waitFor(async () => (await deps.statusOf(label)) === "running", { what: "session running" });

  // Typing reaches the program and its output comes back.
  tmux.type("echo product=$((6*7))");
  await tmux.waitFor("product=42", 30_000);

  // The PTY follows the local terminal's size.
  tmux.resize(91, 27);
  await waitFor(
    async () => {
      tmux.type("stty size");
      return (await tmux.waitFor(/\d+ \d+\s*\n/, 2_000).catch(() => "")).includes("27 91");
    },
    { timeoutMs: 15_000, what: "stty size 27 91" },
  );

  // A full-screen program draws its screen.
  tmux.type("vim -u NONE -N /tmp/catty-e2e-vim.txt");
  await tmux.waitFor(/^~\s*$/m);
  tmux.keys("i");
  tmux.type("hello from vim", false);
  tmux.keys("Escape");
  await tmux.waitFor("hello from vim");
  tmux.type(":q!");
  await waitFor(() => !/^~\s*$/m.test(tmux.capture()), { what: "vim to quit" });

  // Detach with Ctrl+C twice: catty exits 0 and the session keeps running.
  tmux.type("MYVAR=kept-$((40+2)); echo set-$MYVAR");
  await tmux.waitFor("set-kept-42");
  tmux.keys("C-c");
  tmux.keys("C-c");
  await tmux.waitFor(`Detached from ${label}`);
  expect(await shellExitCode(tmux, "CATTY_EXIT")).toBe(0);
  expect(await deps.statusOf(label)).toBe("running");

  // Reconnect: the shell (and its variable) is still there.
  tmux.type("clear");
  tmux.type(`catty connect ${label}; echo CONNECT_EXIT=$?`);
  tmux.type("echo value=$MYVAR");
  await tmux.waitFor("value=kept-42");

  // The program's exit code becomes catty's, and the session is stopped.
  tmux.type("exit 7");
  expect(await shellExitCode(tmux, "CONNECT_EXIT")).toBe(7);
  await waitFor(async () => (await deps.statusOf(label)) === "stopped", { what: "session stopped" });
  expect(await deps.exitCodeOf(label)).toBe(7);
  return label;
}
