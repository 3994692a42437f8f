/**
 * End to end through the real binaries: catty-server on a free port, catty driven inside tmux,
 * sessions running bash and vim under a real PTY in detached catty-agent processes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinaries, type Binaries } from "../helpers/binaries.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { sessionFlow, shellExitCode as exitCodeAfter } from "../helpers/session-flow.ts";
import { Tmux } from "../helpers/tmux.ts";
import { waitFor } from "../helpers/wait.ts";
import { pathWithout } from "../helpers/env-path.ts";

let bins: Binaries;
let server: ServerProcess;
let tmux: Tmux;
let home: string;
let work: string;

interface ListedSession {
  label: string;
  status: string;
  exitCode: number | null;
}

function cattyJson(args: string[]): ListedSession[] {
  const res = Bun.spawnSync([bins.catty, ...args], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
  if (res.exitCode !== 0) throw new Error(`catty ${args.join(" ")}: ${res.stderr.toString()}`);
  return JSON.parse(res.stdout.toString()) as ListedSession[];
}

const list = (): ListedSession[] => cattyJson(["list", "--json"]);
const statusOf = (label: string): string | undefined => list().find((s) => s.label === label)?.status;

const shellExitCode = (marker: string): Promise<number> => exitCodeAfter(tmux, marker);

/** A new terminal with a local shell, so that a test starts clean whatever the one before left attached. */
function freshTerminal(): void {
  tmux?.kill();
  tmux = new Tmux({ HOME: home, CATTY_HOME: home, PATH: `${bins.dir}:${process.env.PATH}`, PS1: "$ " });
  tmux.start({ cols: 100, rows: 30, cwd: work });
}

beforeAll(async () => {
  bins = await buildBinaries();
  server = new ServerProcess(bins.server);
  await server.start();
  home = mkdtempSync(join(tmpdir(), "catty-e2e-home-"));
  work = mkdtempSync(join(tmpdir(), "catty-e2e-work-"));
  freshTerminal();
  const login = Bun.spawnSync([bins.catty, "login", "--api", server.url, "--token", server.ownerToken], {
    env: { ...process.env, HOME: home, CATTY_HOME: home },
  });
  expect(login.exitCode).toBe(0);
}, 60_000);

afterAll(async () => {
  tmux?.kill();
  for (const s of list().filter((s) => s.status === "running")) {
    Bun.spawnSync([bins.catty, "stop", s.label], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
  }
  await server?.stop();
});

describe("a session end to end", () => {
  test("type, resize, vim, detach, reconnect, exit code", async () => {
    await sessionFlow(tmux, { statusOf, exitCodeOf: (label) => list().find((s) => s.label === label)?.exitCode });
  }, 120_000);

  test("a running session survives kill -9 of the server", async () => {
    tmux.type("clear");
    tmux.type("catty new --no-upload -- bash --norc --noprofile; echo NEW2_EXIT=$?");
    const started = await tmux.waitFor(/Session ([a-z]+-[a-z]+-\d{4}) started/);
    const label = /Session ([a-z]+-[a-z]+-\d{4}) started/.exec(started)?.[1] as string;
    tmux.type("SURVIVOR=yes-$((1+1)); echo set-$SURVIVOR");
    await tmux.waitFor("set-yes-2");
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode("NEW2_EXIT")).toBe(0);

    await server.kill9();
    await server.start();
    await waitFor(() => statusOf(label) === "running", { what: "session listed as running after restart" });

    tmux.type("clear");
    tmux.type(`catty connect ${label}; echo CONNECT2_EXIT=$?`);
    tmux.type("echo survivor=$SURVIVOR");
    await tmux.waitFor("survivor=yes-2", 30_000);
    tmux.type("exit 3");
    expect(await shellExitCode("CONNECT2_EXIT")).toBe(3);
  }, 120_000);

  test("the sync-back notice goes without erasing catty's lines or doubling the prompt", async () => {
    // A screen left by an earlier catty may still show a notice: wait for the clear to take effect.
    tmux.type("clear; echo NOTICE_START");
    await waitFor(() => /^NOTICE_START$/m.test(tmux.capture()) && !tmux.capture().includes("catty:"), { what: "a clear screen" });
    tmux.type("catty new --no-upload -- bash --norc --noprofile; echo NOTICE_EXIT=$?");
    await tmux.waitFor(/Session [a-z]+-[a-z]+-\d{4} started[^]*catty: sync-back on/);
    const screen = await waitFor(
      () => {
        const now = tmux.capture();
        return now.includes("catty: sync-back on") ? null : now;
      },
      { timeoutMs: 15_000, what: "the sync-back notice to go" },
    );
    expect(screen).toMatch(/Session [a-z]+-[a-z]+-\d{4} started/);
    expect(screen).toContain("catty new --no-upload");
    // The session's prompt, alone on its line (the outer shell's has the command after it).
    expect(screen.match(/^bash-\d+\.\d+[$#] ?$/gm)).toHaveLength(1);
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode("NOTICE_EXIT")).toBe(0);
  }, 60_000);

  test("full raw mode while attached, and the terminal exactly as before on detach, takeover, signal and exit", async () => {
    /** `stty -a` of the tmux shell's terminal, as it is now. */
    let n = 0;
    const sttyNow = async (): Promise<string> => {
      const file = join(work, `stty-${++n}`);
      tmux.type(`stty -a > ${file}.tmp && mv ${file}.tmp ${file}`);
      return waitFor(() => existsSync(file) && readFileSync(file, "utf8"), { what: `stty -a in ${file}` });
    };
    tmux.type("clear");
    const before = await sttyNow();
    expect(before).toContain(" onlcr");

    tmux.type("catty new --no-upload -- bash --norc --noprofile; echo RAW_EXIT=$?");
    const started = await tmux.waitFor(/Session ([a-z]+-[a-z]+-\d{4}) started/);
    const label = /Session ([a-z]+-[a-z]+-\d{4}) started/.exec(started)?.[1] as string;
    // A program that turns onlcr off uses a bare LF as "cursor down": BBBB starts in column 4.
    tmux.type("clear; stty -onlcr; printf 'AAAA\\nBBBB\\n'; stty onlcr");
    const screen = await tmux.waitFor(/^AAAA\s*\n.*BBBB/m);
    expect(screen).toMatch(/^AAAA\s*\n {4}BBBB/m);

    // Detach: the outer terminal is as it was.
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode("RAW_EXIT")).toBe(0);
    expect(await sttyNow()).toBe(before);

    // Taken over by another client: as it was.
    tmux.type("clear");
    tmux.type(`catty connect ${label}; echo TAKEN_EXIT=$?`);
    tmux.type("echo back-in-$((2+3))");
    await tmux.waitFor("back-in-5");
    const other = new Tmux({ HOME: home, CATTY_HOME: home, PATH: `${bins.dir}:${process.env.PATH}` });
    try {
      other.start({ cols: 80, rows: 24, cwd: work });
      other.type(`catty connect ${label}`);
      await tmux.waitFor(/Taken over by another client/);
      expect(await shellExitCode("TAKEN_EXIT")).toBe(0);
      expect(await sttyNow()).toBe(before);
      other.keys("C-c");
      other.keys("C-c");
      await other.waitFor(`Detached from ${label}`);
    } finally {
      other.kill();
    }

    // A signal (here SIGTERM to that catty): as it was.
    tmux.type("clear");
    tmux.type(`catty connect ${label}; echo SIGNAL_EXIT=$?`);
    tmux.type("echo signalled-$((4+4))");
    await tmux.waitFor("signalled-8");
    const pids = Bun.spawnSync(["pgrep", "-f", `catty connect ${label}`]).stdout.toString().trim().split(/\s+/);
    expect(pids).toHaveLength(1);
    process.kill(Number(pids[0]), "SIGTERM");
    expect(await shellExitCode("SIGNAL_EXIT")).toBe(130);
    expect(await sttyNow()).toBe(before);

    // The program exits: as it was.
    tmux.type("clear");
    tmux.type(`catty connect ${label}; echo EXIT_EXIT=$?`);
    tmux.type("echo again-$((3+4))");
    await tmux.waitFor("again-7");
    tmux.type("exit 4");
    expect(await shellExitCode("EXIT_EXIT")).toBe(4);
    expect(await sttyNow()).toBe(before);
  }, 120_000);

  test("stdin that is not a terminal is a clear error with exit code 1", () => {
    const res = Bun.spawnSync([bins.catty, "new", "--no-upload", "--", "bash"], {
      stdin: "ignore",
      env: { ...process.env, HOME: home, CATTY_HOME: home },
    });
    expect(res.exitCode).toBe(1);
    expect(res.stderr.toString()).toContain("stdin is not a terminal");
  });

  test("a server started without $SHELL or $USER (a service manager, env -i) still opens a login shell", async () => {
    // Whatever the machine has installed: no claude on the PATH, so the session opens a shell.
    const bare = new ServerProcess(bins.server, { SHELL: undefined, USER: undefined, LOGNAME: undefined, PATH: pathWithout("claude") });
    await bare.start();
    try {
      tmux.type(`CATTY_API_ADDR=${bare.url} CATTY_TOKEN=${bare.ownerToken} catty new --no-upload --no-sync-back; echo BARE_EXIT=$?`);
      await tmux.waitFor(/Claude Code is not installed/, 15_000);
      tmux.type("echo shell-is-[$0]");
      const shown = await tmux.waitFor(/shell-is-\[[^\]$]+\]/, 15_000);
      expect(shown).toMatch(/shell-is-\[(-?\/\S*\/)?-?(bash|sh|dash|zsh)\]/);
      tmux.type("exit");
      expect(await shellExitCode("BARE_EXIT")).toBe(0);
    } finally {
      await bare.stop();
    }
  }, 60_000);

  test("the picker: catty list on a terminal connects with Enter; catty connect with no label picks too; q quits with 0", async () => {
    freshTerminal();
    const running = cattyJson(["list", "--json"]).length;
    tmux.type("clear; echo PICKER_TEST; catty new --no-upload --no-sync-back -- bash --norc -i");
    const label = /^PICKER_TEST$[^]*Session (\S+) started/m.exec(await tmux.waitFor(/^PICKER_TEST$[^]*Session \S+ started/m, 30_000))?.[1] as string;
    tmux.type("echo picked-$((40+2))");
    await tmux.waitFor(/^picked-42/m);
    tmux.keys("C-c");
    tmux.keys("C-c");
    await tmux.waitFor(/Detached/);
    // (A user's terminal: CI runs set CI, where catty prints the table instead.)
    tmux.type("clear; env -u CI catty list; echo LIST_EXIT=$?");
    // The newest session first, under the cursor.
    await tmux.waitFor(new RegExp(`❯ ${label}\\s+● running`));
    expect(tmux.capture()).toMatch(new RegExp(`^${running + 1} sessions?$`, "m"));
    tmux.keys("Enter");
    await tmux.waitFor(/^picked-42/m);
    tmux.type("echo again-$((3*3))");
    await tmux.waitFor(/^again-9/m);
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode("LIST_EXIT")).toBe(0);
    tmux.type("clear; env -u CI catty connect; echo PICK_EXIT=$?");
    await tmux.waitFor(new RegExp(`❯ ${label}`));
    tmux.type("q", false);
    expect(await shellExitCode("PICK_EXIT")).toBe(0);
    // Not a terminal: the plain table, never the picker.
    const piped = Bun.spawnSync(["bash", "-c", `${bins.catty} list | cat`], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
    expect(piped.stdout.toString()).toMatch(/^LABEL\s+STATUS\s+REGION\s+CREATED$/m);
    // CI: a terminal, but the table.
    tmux.type("clear; CI=true catty list; echo CI_EXIT=$?");
    expect(await shellExitCode("CI_EXIT")).toBe(0);
    expect(tmux.capture()).toMatch(/^LABEL\s+STATUS\s+REGION\s+CREATED$/m);
    Bun.spawnSync([bins.catty, "stop", label], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
  }, 90_000);

  test("detaching without disturbing the program: Enter ~ ., detach keys, ~~ and ~?; Ctrl+C twice sends the program one", async () => {
    freshTerminal();
    // Counts the Ctrl+C it gets, and names every other key.
    const counter = join(work, "count-keys.sh");
    writeFileSync(
      counter,
      [
        "stty raw -echo",
        "n=0",
        // (bash's read -n turns signals back on: Ctrl+C arrives as SIGINT, counted here.)
        "trap 'n=$((n+1)); printf \"ctrl-c %d\\r\\n\" \"$n\"' INT",
        "printf 'ready\\r\\n'",
        "while :; do",
        "  if IFS= read -r -n1 -d '' c; then printf 'key [%s]\\r\\n' \"$c\"; fi",
        "done",
      ].join("\n"),
    );
    tmux.type(`clear; echo ESCAPES_TEST; catty new --no-upload --no-sync-back --detach-keys ctrl-p,ctrl-q -- bash ${counter}; echo NEW_EXIT=$?`);
    const started = await tmux.waitFor(/^ESCAPES_TEST$[^]*Session \S+ started[^]*ready/m, 30_000);
    const label = /Session (\S+) started/.exec(started)?.[1] as string;
    // (tmux may wrap the line at any space: compare without them.)
    expect(started.replace(/\s+/g, "")).toContain("DetachwithCtrl+PCtrl+Q,Enter~.orCtrl+Ctwice");
    // ~ at the start (nothing typed yet), then . : detached, and the program saw neither.
    tmux.type("~.", false);
    expect(await shellExitCode("NEW_EXIT")).toBe(0);
    expect(tmux.capture()).toContain(`Detached from ${label}`);

    tmux.type(`clear; catty connect ${label} --detach-keys ctrl-p,ctrl-q; echo C1=$?`);
    await tmux.waitFor(/ready/);
    tmux.type("a", false);
    await tmux.waitFor(/key \[a\]/);
    tmux.keys("Enter");
    tmux.type("~~", false);
    await tmux.waitFor(/key \[~\]/);
    tmux.keys("Enter");
    tmux.type("~?", false);
    await tmux.waitFor(/escapes \(after Enter\): ~\. detach/);
    tmux.keys("C-p", "C-q");
    expect(await shellExitCode("C1")).toBe(0);

    tmux.type(`clear; catty connect ${label}; echo C2=$?`);
    // The key below was on the screen before the clear too: first see the clear happen, so the
    // Ctrl+C pair goes to the attached catty, not to the shell before it starts.
    await waitFor(() => !tmux.capture().includes("C1="), { what: "the screen cleared" });
    await tmux.waitFor(/key \[~\]/);
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode("C2")).toBe(0);
    tmux.type(`clear; catty connect ${label}; echo C3=$?`);
    await tmux.waitFor(/ctrl-c 1/);
    // In all: one Ctrl+C reached the program (the first of the pair), and none of the escapes.
    const screen = tmux.capture();
    expect(screen).not.toContain("ctrl-c 2");
    expect(screen).not.toMatch(/key \[[.?\x10\x11]\]/);
    tmux.type("~.", false);
    expect(await shellExitCode("C3")).toBe(0);
    Bun.spawnSync([bins.catty, "stop", label], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
  }, 90_000);

  test("files dropped on the terminal (a bracketed paste of their paths) go to .catty-uploads once the user says so; the program gets the remote paths; private files are never offered", async () => {
    freshTerminal();
    const dir = mkdtempSync(join(tmpdir(), "catty-drop-"));
    const png = crypto.getRandomValues(new Uint8Array(200_000));
    writeFileSync(join(dir, "Screen Shot.png"), png);
    writeFileSync(join(dir, "notes.md"), "# notes\n");
    writeFileSync(join(dir, "tool.exe"), "MZ");
    writeFileSync(join(dir, "huge.pdf"), Buffer.alloc(10 * 1024 * 1024 + 1));
    // Asks for bracketed pastes (as Claude Code does) and shows what it gets, escapes visible.
    const show = join(work, "show-paste.sh");
    writeFileSync(show, "printf '\\033[?2004h'; stty raw -echo; printf 'ready\\r\\n'; exec cat -v\n");
    tmux.type(`clear; echo DROP_TEST; catty new --no-upload --no-sync-back -- bash ${show}; echo DROP_EXIT=$?`);
    const started = await tmux.waitFor(/^DROP_TEST$[^]*Session \S+ started[^]*ready/m, 30_000);
    const label = /Session (\S+) started/.exec(started)?.[1] as string;
    const uploads = join(server.dataDir, "sessions", label, "workspace", ".catty-uploads");

    const joined = (): string => tmux.capture().replaceAll("\n", "");
    tmux.paste(`${join(dir, "Screen\\ Shot.png")} ${join(dir, "notes.md")}`);
    // Asked first, with the full paths; nothing goes before Enter.
    await waitFor(() => /upload these 2 files to the session\? Enter uploads · Esc pastes the text/.test(joined()), { what: "the upload question" });
    expect(joined()).toContain(join(dir, "Screen Shot.png"));
    expect(joined()).toContain(join(dir, "notes.md"));
    expect(existsSync(uploads)).toBe(false);
    tmux.keys("Enter");
    const shown = await tmux.waitFor(/\^\[\[200~[^]*\^\[\[201~/, 30_000);
    const typed = /\^\[\[200~([^]*?)\^\[\[201~/.exec(shown.replaceAll("\n", ""))?.[1] as string;
    const remote = typed.split(" ");
    expect(remote).toHaveLength(2);
    expect(remote[0]).toMatch(new RegExp(`^${uploads}/Screen-Shot-\\d{8}-\\d{6}\\.png$`));
    expect(remote[1]).toMatch(new RegExp(`^${uploads}/notes-\\d{8}-\\d{6}\\.md$`));
    expect(new Uint8Array(readFileSync(remote[0] as string))).toEqual(png);
    expect(readFileSync(remote[1] as string, "utf8")).toBe("# notes\n");

    await waitFor(() => !joined().includes("Enter uploads"), { what: "the question gone" });

    // Esc: the text is pasted as it was, nothing uploaded.
    tmux.paste(join(dir, "notes.md"));
    await waitFor(() => joined().includes("upload this file to the session?"), { what: "the question again" });
    tmux.keys("Escape");
    await waitFor(() => joined().includes(`^[[200~${join(dir, "notes.md")}^[[201~`), { what: "notes.md pasted as text" });

    // Private files are never offered (a program can put any path in the clipboard): catty's own
    // credentials, and a harmless-looking link to them. Pasted as text, with a word why.
    symlinkSync(join(home, "credentials.json"), join(dir, "cat.png"));
    tmux.paste(join(home, "credentials.json"));
    await waitFor(() => joined().includes("catty: not uploading"), { what: "the refusal" });
    await waitFor(() => joined().includes(`^[[200~${join(home, "credentials.json")}^[[201~`), { what: "credentials.json pasted as text" });
    tmux.paste(join(dir, "cat.png"));
    await waitFor(() => joined().includes("is a symbolic link"), { what: "the link refused" });
    await waitFor(() => joined().includes(`^[[200~${join(dir, "cat.png")}^[[201~`), { what: "the link pasted as text" });

    // A type a session does not take, and a file over 10 MB: pasted as they were.
    for (const name of ["tool.exe", "huge.pdf"]) {
      tmux.paste(join(dir, name));
      await waitFor(() => tmux.capture().replaceAll("\n", "").includes(`^[[200~${join(dir, name)}^[[201~`), { what: `${name} pasted as it was` });
    }
    expect(readdirSync(uploads)).toHaveLength(2);
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode("DROP_EXIT")).toBe(0);
    Bun.spawnSync([bins.catty, "stop", label], { env: { ...process.env, HOME: home, CATTY_HOME: home } });
  }, 90_000);

  test("catty stop --all asks first (n stops nothing), --yes does not ask, a script without --yes is refused", async () => {
    freshTerminal();
    const env = { ...process.env, HOME: home, CATTY_HOME: home };
    for (let i = 0; i < 2; i++) {
      await fetch(`${server.url}/v1/sessions`, { method: "POST", headers: { Authorization: `Bearer ${server.ownerToken}`, "Content-Type": "application/json" }, body: JSON.stringify({ command: ["sleep", "300"] }) });
    }
    const running = (): string[] => list().filter((s) => s.status === "running" || s.status === "starting").map((s) => s.label);
    expect(running().length).toBeGreaterThanOrEqual(2);
    const scripted = Bun.spawnSync([bins.catty, "stop", "--all"], { env, stdin: "ignore" });
    expect(scripted.exitCode).toBe(1);
    expect(scripted.stderr.toString()).toContain("without a confirmation");
    expect(scripted.stderr.toString()).toContain("--yes");
    tmux.type("clear; catty stop --all; echo STOP_ALL=$?");
    // (A long list of labels wraps the question: read it with the lines joined.)
    await waitFor(() => /Stop \d+ running sessions? \(.+\)\? \[y\/N\]/.test(tmux.capture().replace(/\n/g, "")), { what: "the stop --all question" });
    tmux.type("n");
    expect(await shellExitCode("STOP_ALL")).toBe(1);
    expect(running().length).toBeGreaterThanOrEqual(2);
    const all = Bun.spawnSync([bins.catty, "stop", "--all", "--yes"], { env, stdin: "ignore" });
    expect(all.exitCode).toBe(0);
    expect(running()).toEqual([]);
    const none = Bun.spawnSync([bins.catty, "stop", "--all"], { env, stdin: "ignore" });
    expect(none.exitCode).toBe(0);
    expect(none.stderr.toString() + none.stdout.toString()).toContain("No running sessions.");
    const both = Bun.spawnSync([bins.catty, "stop", "--all", "brave-tiger-0000"], { env, stdin: "ignore" });
    expect(both.exitCode).toBe(1);
  }, 90_000);

  test("an unknown session says what to do", () => {
    const res = Bun.spawnSync([bins.catty, "stop", "brave-tiger-0000"], {
      env: { ...process.env, HOME: home, CATTY_HOME: home },
    });
    expect(res.exitCode).toBe(1);
    expect(res.stderr.toString()).toContain("Session brave-tiger-0000 not found");
    expect(res.stderr.toString()).toContain("catty list");
  });
});
