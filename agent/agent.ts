/**
 * The agent inside a session machine, wired from its parts: the output stream (ring, screen
 * mirror, catch-up), requests to the server, the workspace restore, the program's lifecycle,
 * saves, the workspace journal with sync-back, and the orphan watch. It serves the server's
 * messages over the link (catch-up for clients, input, resize, stop) and ends when the server has
 * recorded the program's exit, when the server ends the session, or when the server has been
 * unreachable for longer than the session's idle timeout.
 */
import { AttentionTracker, claudeHookSettings, foregroundReadsInput } from "./attention.ts";
import { putFile } from "./files.ts";
import { mkdirSync } from "node:fs";
import { seedClaudeConfig } from "../src/lib/claude-config.ts";
import { loginShell } from "../src/lib/account.ts";
import { formatDuration } from "../src/lib/duration.ts";
import type { Log } from "../src/lib/log.ts";
import { lchown } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { treeUser, WorkspaceRoot, type Tree, type TreeUser } from "../src/lib/tree.ts";
import { PROTOCOL_VERSION, type AgentToServer, type SyncPosition } from "../src/protocol/index.ts";
import type { AgentConfig } from "./config.ts";
import type { Link, LinkHandlers } from "./link.ts";
import { OrphanWatch } from "./orphan.ts";
import { Forwards } from "./forwards.ts";
import { connectSessionPort, PortWatch } from "./ports.ts";
import { SESSION_API_PORT, startApiRelay, startNetnsBridge, type NetnsBridge } from "./netns.ts";
import { applyEgress } from "./egress.ts";
import { Output } from "./output.ts";
import { Program } from "./program.ts";
import type { PtyRunner } from "./pty.ts";
import { Requests } from "./requests.ts";
import { restoreWorkspace, type RestoreSource } from "./restore.ts";
import type { ExtractStats } from "../src/lib/archive.ts";
import { WorkspaceSaver, type SaveOutcome } from "./saver.ts";
import { SyncSender } from "./sync-sender.ts";
import { DIR_SIGNATURE, fileSignature, symlinkSignature, WorkspaceJournal } from "./watch.ts";

export interface AgentDeps {
  config: AgentConfig;
  pty: PtyRunner;
  dial(handlers: LinkHandlers): Link;
  log: Log;
  /** Finds an executable on PATH (Bun.which). */
  which?(name: string): string | null;
  /** Timings tests shorten: SIGHUP→SIGKILL grace, the orphan watch's last try. */
  timing?: { stopGraceMs?: number; lastTryMs?: number; requestTimeoutMs?: number; quietMs?: number; portScanMs?: number };
}

/** How long a file handed before the program started waits for it (the server gives up after a minute). */
const PUT_FILE_START_WAIT_MS = 45_000;

/** How the agent ended. */
export type AgentEnd =
  /** The program exited and the server recorded it. */
  | { kind: "exited"; code: number }
  /** The server ended the session (the program, if it ran, was stopped). */
  | { kind: "ended"; code: number | null }
  /** The server stayed unreachable for longer than the session's idle timeout. */
  | { kind: "orphaned" };

export interface Agent {
  done: Promise<AgentEnd>;
}

function describeSave(outcome: SaveOutcome): string {
  switch (outcome.kind) {
    case "stored":
      return "stored";
    case "unchanged":
      return "unchanged";
    case "failed":
      return `failed: ${outcome.error}`;
  }
}

export const CLAUDE_NOTICE =
  "\x1b[33mClaude Code is not installed on this machine; starting a shell instead. " +
  "Install it with `npm install -g @anthropic-ai/claude-code`, then run `claude`.\x1b[0m\r\n";

/** The program to run: the requested command, else Claude Code if installed, else the login shell. */
export function resolveCommand(
  command: string[],
  which: (name: string) => string | null,
  env: NodeJS.ProcessEnv,
  shell: (env: NodeJS.ProcessEnv) => string = loginShell,
): { argv: string[]; notice: string | null } {
  if (command.length > 0) return { argv: command, notice: null };
  const claude = which("claude");
  // Claude Code with hooks that say when it waits for the user (agent/attention.ts).
  if (claude) return { argv: [claude, "--settings", claudeHookSettings()], notice: null };
  return { argv: [shell(env), "-l"], notice: CLAUDE_NOTICE };
}

/**
 * git's credentials for GitHub from the session's token (GH_TOKEN or GITHUB_TOKEN), given through
 * git's environment configuration (no file in the machine): answered for github.com and for
 * `GH_HOST` (GitHub Enterprise; `gh` reads the same variables).
 */
const GIT_CREDENTIAL_HELPER =
  '!f() { test "$1" = get || exit 0; h=; while IFS== read -r k v; do [ "$k" = host ] && h=$v; done; ' +
  'case "$h" in github.com|"${GH_HOST:-github.com}") echo username=x-access-token; echo "password=${GH_TOKEN:-$GITHUB_TOKEN}";; esac; }; f';

/** The program's environment with the variables from the server's welcome (the user's secrets, API access). */
export function withSessionEnv(base: Record<string, string>, extra: Record<string, string>): Record<string, string> {
  const env = { ...base, ...extra };
  if (env.GH_TOKEN || env.GITHUB_TOKEN) {
    const n = Number(env.GIT_CONFIG_COUNT ?? 0) || 0;
    env.GIT_CONFIG_COUNT = String(n + 1);
    env[`GIT_CONFIG_KEY_${n}`] = "credential.helper";
    env[`GIT_CONFIG_VALUE_${n}`] = GIT_CREDENTIAL_HELPER;
  }
  return env;
}

function programEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && !k.startsWith("CATTY_")) out[k] = v;
  }
  out.TERM = "xterm-256color";
  out.COLORTERM = "truecolor";
  out.CATTY = "1";
  return out;
}

/**
 * The restored tree as the workspace journal signs it (`WorkspaceJournal.start`): files from the
 * restore's records, directories, and symlinks as they are now; null when the restore kept no records.
 */
function journalPicture(tree: Tree, stats: ExtractStats): Map<string, string> | undefined {
  if (!stats.written || !stats.others) return undefined;
  const picture = new Map<string, string>();
  for (const [rel, f] of stats.written) picture.set(rel, fileSignature(f.size, f.mtimeMs, f.mode));
  for (const [rel, kind] of stats.others) {
    if (kind === "dir") picture.set(rel, DIR_SIGNATURE);
    else {
      const st = tree.lstat(rel);
      if (st?.isSymbolicLink()) picture.set(rel, symlinkSignature(st.mtimeMs));
    }
  }
  return picture;
}

/** Gives the workspace to the sandbox's user, so the program may change what is in it. */
async function handOver(tree: Tree, owner: TreeUser): Promise<void> {
  // The root is the agent's own path (the provider made it), not one the program can swap.
  await lchown(tree.root, owner.uid, owner.gid);
  await tree.walk((_rel, _st, parent) => {
    try {
      parent.chown(_rel.slice(_rel.lastIndexOf("/") + 1), owner);
    } catch {
      // gone meanwhile
    }
  });
}

export function createAgent(deps: AgentDeps): Agent {
  const { config, log } = deps;
  const timing = deps.timing ?? {};
  let resolveDone: (end: AgentEnd) => void = () => {};
  const done = new Promise<AgentEnd>((resolve) => (resolveDone = resolve));
  const finish = (end: AgentEnd): void => {
    bridge?.close();
    relay?.stop();
    ports.stop();
    forwards.close();
    attention.close();
    watch.close();
    link.close();
    saver.stop();
    void journal.close().then(() => tree.close());
    resolveDone(end);
  };
  let phase: "waiting" | "restoring" | "running" | "failed" = "waiting";
  /** The program's extra environment from the server's welcome. */
  let sessionEnv: Record<string, string> = {};
  /** The server is gone for good: no final save (it would have nowhere to go). */
  let orphaned = false;
  /** Sync-back subscriptions that arrived before the journal was ready. */
  const early = new Map<number, SyncPosition>();

  const sendJson = (msg: AgentToServer): boolean => link.sendMessage(msg);
  const output = new Output({
    ringBytes: config.ringBytes,
    cols: config.cols,
    rows: config.rows,
    send: (data) => link.send(data),
    sendMessage: sendJson,
    log,
  });
  const requests = new Requests({ send: sendJson, timeoutMs: timing.requestTimeoutMs });
  const command = resolveCommand(config.command, deps.which ?? ((n) => Bun.which(n)), process.env);
  const runsClaude = basename(command.argv[0] ?? "") === "claude";

  const handlers: LinkHandlers = {
    onOpen() {
      watch.up();
      sendJson({ type: "hello", protocol: PROTOCOL_VERSION, offset: output.end, cols: output.cols, rows: output.rows, pid: program.pid });
      program.resend();
      if (program.started) attention.resend();
      sendJson({ type: "ports", ports: ports.ports });
    },
    onMessage(msg) {
      switch (msg.type) {
        case "welcome":
          log.info("session", { label: msg.label });
          // Its values are never logged or written: they go into the program's environment only.
          if (msg.env && (phase === "waiting" || phase === "restoring")) sessionEnv = msg.env;
          void begin(msg.restore);
          return;
        case "save_target":
        case "save_result":
          requests.answer(msg);
          return;
        case "attach": {
          const { clientId, syncBack } = msg;
          void output
            .catchUp(clientId, msg.offset, msg.repaint)
            .then(() => {
              if (!syncBack) return;
              if (phase === "running") syncSender.subscribe(clientId, syncBack);
              else early.set(clientId, syncBack);
            })
            .catch((err: unknown) => log.error("catching a client up failed", { clientId, err }));
          return;
        }
        case "detach":
          syncSender.unsubscribe(msg.clientId);
          early.delete(msg.clientId);
          return;
        case "resize":
          if (output.resize(msg.cols, msg.rows)) program.resize(msg.cols, msg.rows);
          return;
        case "stop":
          program.stop(msg.reason);
          return;
        case "exit_ack": {
          // The agent may go: after its exit report, or when the program never ran (the restore failed).
          const report = program.exitReport;
          if (!report && program.started) {
            log.warn("the server acknowledged an exit that was not reported yet; ignored");
            return;
          }
          program.acknowledge();
          link.close();
          finish(report ? { kind: "exited", code: report.code } : { kind: "ended", code: null });
          return;
        }
        case "put_file": {
          const { id, name, size } = msg;
          // A file handed while the workspace is still being restored lands once the program runs.
          void program
            .whenStarted(PUT_FILE_START_WAIT_MS)
            .then((started) => {
              if (!started || program.exitReport) throw new Error("the program is not running");
              return putFile(msg, { serverUrl: config.serverUrl, workspace: config.workspace, wrap: config.wrap });
            })
            .then(
              (path) => {
                log.info("file handed over", { name, size });
                sendJson({ type: "file_put", id, path, error: null });
              },
              (err: Error) => {
                log.warn("a handed file was not written", { name, err: err.message });
                sendJson({ type: "file_put", id, path: null, error: err.message });
              },
            );
          return;
        }
        case "forward":
          forwards.open(msg.id);
          return;
        case "ping":
          sendJson({ type: "pong", id: msg.id });
          return;
        case "pong":
          return;
        case "error":
          log.error("server error", { code: msg.code, message: msg.message });
          return;
        default: {
          const never: never = msg;
          return never;
        }
      }
    },
    onDown() {
      watch.down();
      requests.failAll("the link to the server dropped");
      syncSender.unsubscribeAll();
    },
    onBinary(data) {
      attention.input();
      program.write(data);
    },
    onEnded(reason) {
      log.warn("server says the session has ended; stopping", { reason });
      watch.close();
      if (!program.started) {
        finish({ kind: "ended", code: null });
        return;
      }
      program.stop(reason);
      void program.exited.then((code) => finish({ kind: "ended", code }));
    },
  };

  /** The TCP ports the session's programs listen on, reported as they change (agent/ports.ts). */
  const ports = new PortWatch({
    pid: () => (program.started && !program.exitReport ? program.pid : null),
    everyMs: timing.portScanMs ?? 2_000,
    onChange: (list) => sendJson({ type: "ports", ports: list }),
  });
  const forwards = new Forwards({
    serverUrl: config.serverUrl,
    token: config.token,
    log,
    listener: (port) => ports.lookup(port),
    connect: (l) => connectSessionPort(l, bridge?.portsSocket),
  });
  /** The way into the session's own network namespace, when it has one (agent/netns.ts). */
  let bridge: NetnsBridge | null = null;
  /** Catty's API on the loopback the agent shares with the program (a container with an egress policy). */
  let relay: { stop(): void } | null = null;

  /** The server stayed away: stop the program and go (a final save has nowhere to go). */
  const watch = new OrphanWatch({
    idleTimeoutMs: config.idleTimeoutMs,
    lastTryMs: timing.lastTryMs,
    log,
    onGiveUp(downForMs) {
      const rounded = downForMs >= 60_000 ? Math.round(downForMs / 60_000) * 60_000 : Math.round(downForMs / 1000) * 1000;
      const what = program.started && !program.exitReport ? "stopping the program and exiting" : "exiting";
      log.error(`the server has been unreachable for ${formatDuration(rounded)}; ${what}`, { serverUrl: config.serverUrl });
      orphaned = true;
      link.close();
      saver.stop();
      if (!program.started) {
        finish({ kind: "orphaned" });
        return;
      }
      program.stop("the server is unreachable");
      void program.exited.then(() => finish({ kind: "orphaned" }));
    },
  });

  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  mkdirSync(config.workspace, { recursive: true, mode: 0o755 });
  /** The program's user, when it is not the agent's: the workspace is read only as it could read it. */
  const owner = treeUser(config.owner);
  // Every read of the workspace goes through descriptors from here, never through a symlink
  // (src/lib/tree.ts); opened once the restore has put the workspace in place.
  const tree = new WorkspaceRoot(config.workspace, owner);
  const journal = new WorkspaceJournal({
    tree,
    log,
    scanIntervalMs: config.syncScanMs,
    onChange: () => syncSender.changed(),
  });
  const saver = new WorkspaceSaver({
    tree,
    log,
    firstDelayMs: config.saveFirstMs,
    intervalMs: config.saveIntervalMs,
    journal,
    transport: {
      target: async (id, reason) => {
        const answer = await requests.ask({ type: "save_request", id, reason }, "save_target", id);
        if (!answer.url) throw new Error(answer.error ?? "the server gave no place to save to");
        return new URL(answer.url, `${config.serverUrl}/`).toString();
      },
      done: async (id, stats) => {
        const answer = await requests.ask({ type: "save_done", id, ...stats }, "save_result", id);
        if (!answer.ok) throw new Error(answer.error ?? "the server refused the save");
      },
    },
  });

  const syncSender = new SyncSender({
    journal,
    tree,
    maxFileBytes: config.syncMaxBytes,
    send: sendJson,
    sendBinary: (data) => link.send(data),
    buffered: () => link.buffered,
    log,
  });

  const attention = new AttentionTracker({
    send: (a) => sendJson({ type: "attention", ...a }),
    readsInput: () => foregroundReadsInput(program.pid),
    ...(timing.quietMs !== undefined ? { quietMs: timing.quietMs } : {}),
  });
  const program = new Program({
    pty: deps.pty,
    // The sandbox's wrapper (from the provider) comes first; the program runs inside it.
    argv: [...config.wrap, ...command.argv],
    cwd: config.workspace,
    env: () => withSessionEnv(programEnv(process.env), sessionEnv),
    size: () => ({ cols: output.cols, rows: output.rows }),
    output: (data) => {
      attention.output(data);
      output.write(data);
    },
    send: sendJson,
    log,
    graceMs: timing.stopGraceMs,
    wrapUp: async () => {
      await journal.close();
      const finalSave = orphaned ? null : describeSave(await saver.finish());
      // The exit is reported whatever happens to the screen: a session must be able to end.
      const screen = await output.screen(200).catch((err: unknown) => {
        log.error("could not take the last screen", { err });
        return "";
      });
      return { finalSave, screen };
    },
  });

  /** Restores the initial workspace (once), then starts the program. */
  const begin = async (restore: RestoreSource | null): Promise<void> => {
    if (phase !== "waiting") return;
    phase = "restoring";
    /** What the restore wrote, as the journal sees it: its picture need not come before the program. */
    let restored: Map<string, string> | undefined;
    if (restore) {
      try {
        const started = performance.now();
        const stats = await restoreWorkspace(restore, config);
        tree.open();
        if (stats.written) saver.seedRestored(stats.written);
        restored = journalPicture(tree, stats);
        sendJson({ type: "restored", files: stats.files, bytes: stats.bytes });
        log.info("workspace restored", { files: stats.files, bytes: stats.bytes, ms: Math.round(performance.now() - started) });
      } catch (err) {
        const error = (err as Error).message;
        log.error("workspace restore failed", { error });
        phase = "failed";
        program.abandon();
        sendJson({ type: "restore_failed", error });
        return;
      }
    }
    if (!restore) tree.open();
    // The session pins its Claude Code (the image's, or the host's): no self-update inside it.
    if (runsClaude) sessionEnv = { ...sessionEnv, DISABLE_AUTOUPDATER: "1" };
    if (runsClaude && config.wrap.length === 0) {
      // Unsandboxed, HOME is the host user's: Claude Code gets a config dir of the session's own.
      const dir = join(dirname(config.workspace), "claude-config");
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      seedClaudeConfig(dir, config.workspace);
      sessionEnv = { ...sessionEnv, CLAUDE_CONFIG_DIR: dir };
    }
    if (config.egress && !relay) {
      // The program must not run open: rules first, or no program.
      try {
        await applyEgress(config.egress);
        relay = startApiRelay({ hostname: "127.0.0.1", port: SESSION_API_PORT }, config.serverUrl, log);
        log.info("egress policy set", { policy: config.egress.policy });
      } catch (err) {
        const error = `the session's egress policy could not be set up: ${(err as Error).message}`;
        log.error(error);
        phase = "failed";
        program.abandon();
        sendJson({ type: "restore_failed", error });
        return;
      }
    }
    if (config.netns) {
      try {
        bridge ??= await startNetnsBridge({ netns: config.netns, dir: join(config.stateDir, "bridge"), serverUrl: config.serverUrl, log });
      } catch (err) {
        log.error("no way into the session's network: the program runs without Catty's API", { err: (err as Error).message });
        output.write(new TextEncoder().encode(`\x1b[33mcatty: the Claude API is not reachable in this session: ${(err as Error).message}\x1b[0m\r\n`));
      }
    }
    // The program reaches the Claude API proxy through the bridge (the server is outside its network).
    const apiUrl = bridge?.apiUrl ?? (relay ? `http://127.0.0.1:${SESSION_API_PORT}` : null);
    if (apiUrl && sessionEnv.ANTHROPIC_BASE_URL) sessionEnv = { ...sessionEnv, ANTHROPIC_BASE_URL: `${apiUrl}/v1/anthropic` };
    // A restored tree was given to the owner as it was written.
    if (owner && !restore) await handOver(tree, owner);
    // Started from what the restore wrote, the journal records whatever the program changes while
    // it takes its picture; otherwise the picture comes first.
    const watching = journal.start(restored);
    if (!restored) await watching;
    for (const [clientId, from] of early) syncSender.subscribe(clientId, from);
    early.clear();
    phase = "running";
    if (command.notice) output.write(new TextEncoder().encode(command.notice));
    program.start();
    ports.start();
    saver.start();
    await watching;
  };

  const link = deps.dial(handlers);
  if (!link.connected) watch.down(); // the server may never answer
  return { done };
}
