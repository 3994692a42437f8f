/**
 * The agent inside a session machine: runs the program under a PTY, numbers its output, keeps the
 * ring and the screen mirror, and serves the server's requests over the link (catch-up for clients,
 * input, resize, stop). When the program exits it reports the exit until the server acknowledges.
 */
import { mkdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { extractArchive } from "../src/lib/archive.ts";
import {
  encodeAgentOutput,
  parseMessage,
  PROTOCOL_VERSION,
  ServerToAgent,
  type AgentToServer,
  type SyncPosition,
} from "../src/protocol/index.ts";
import type { Log } from "../src/lib/log.ts";
import type { AgentConfig } from "./config.ts";
import type { Link, LinkHandlers } from "./link.ts";
import type { PtyProcess, PtyRunner } from "./pty.ts";
import { OutputRing } from "./ring.ts";
import { WorkspaceSaver, type SaveOutcome } from "./saver.ts";
import { SyncSender } from "./sync-sender.ts";
import { WorkspaceJournal } from "./watch.ts";
import { ScreenMirror } from "./screen.ts";

export interface AgentDeps {
  config: AgentConfig;
  pty: PtyRunner;
  dial(handlers: LinkHandlers): Link;
  log: Log;
  /** Finds an executable on PATH (Bun.which). */
  which?(name: string): string | null;
}

export interface Agent {
  /** Resolves when the program has exited and the server has recorded it (or the session ended). */
  done: Promise<number>;
}

/** Replays go out in pieces so one client's catch-up never becomes one giant frame. */
const REPLAY_CHUNK = 256 * 1024;
const STOP_GRACE_MS = 5_000;
const REQUEST_TIMEOUT_MS = 60_000;

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
): { argv: string[]; notice: string | null } {
  if (command.length > 0) return { argv: command, notice: null };
  const claude = which("claude");
  if (claude) return { argv: [claude], notice: null };
  let shell = env.SHELL;
  if (!shell) {
    try {
      shell = userInfo().shell ?? undefined;
    } catch {
      shell = undefined;
    }
  }
  return { argv: [shell || "/bin/sh", "-l"], notice: CLAUDE_NOTICE };
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

export function createAgent(deps: AgentDeps): Agent {
  const { config, log } = deps;
  const ring = new OutputRing(config.ringBytes);
  const mirror = new ScreenMirror(config.cols, config.rows);
  let exitReport: Extract<AgentToServer, { type: "exit" }> | null = null;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (finish = resolve));
  let stopReason: string | null = null;
  let proc: PtyProcess | null = null;
  let exited: Promise<number> = new Promise(() => {});
  let killing = false;
  const typeahead: Uint8Array[] = [];
  let phase: "waiting" | "restoring" | "running" | "failed" = "waiting";
  /** Requests to the server awaiting an answer, by answer type and save id. A dropped link fails them all. */
  const waiting = new Map<string, { answer(msg: ServerToAgent): void; fail(err: Error): void }>();
  const request = <T extends ServerToAgent>(id: string, answer: T["type"], msg: AgentToServer): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const key = `${answer}:${id}`;
      const done = (): void => {
        clearTimeout(timer);
        waiting.delete(key);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error("the server did not answer in time"));
      }, REQUEST_TIMEOUT_MS);
      waiting.set(key, {
        answer: (m) => {
          done();
          resolve(m as T);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      });
      if (!sendJson(msg)) waiting.get(key)?.fail(new Error("not connected to the server"));
    });

  const sendJson = (msg: AgentToServer): boolean => link.send(JSON.stringify(msg));

  const output = (data: Uint8Array): void => {
    const offset = ring.append(data);
    mirror.write(data, ring.end);
    link.send(encodeAgentOutput(0, offset, data));
  };

  const sendBytes = (clientId: number, from: number, bytes: Uint8Array): void => {
    for (let at = 0; at < bytes.length; at += REPLAY_CHUNK) {
      link.send(encodeAgentOutput(clientId, from + at, bytes.subarray(at, at + REPLAY_CHUNK)));
    }
  };

  /** Catches a client up: the exact missing bytes if the ring still has them, else the screen. */
  const catchUp = async (clientId: number, offset: number | null, repaint = false): Promise<void> => {
    const missed = offset === null ? null : ring.since(offset);
    if (missed && offset !== null) {
      sendBytes(clientId, offset, missed);
      sendJson({ type: "synced", clientId, offset: ring.end });
      return;
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const snap = await mirror.snapshot(repaint ? { scrollback: 0 } : {});
      const tail = ring.since(snap.offset);
      if (!tail) continue; // the ring moved past the screen while it was serialized: take it again
      sendJson({ type: "screen", clientId, offset: snap.offset, data: snap.data, cols: snap.cols, rows: snap.rows });
      sendBytes(clientId, snap.offset, tail);
      sendJson({ type: "synced", clientId, offset: ring.end });
      return;
    }
    log.warn("could not catch a client up: output outran the screen mirror", { clientId });
  };

  const handlers: LinkHandlers = {
    onOpen() {
      sendJson({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        offset: ring.end,
        cols: mirror.cols,
        rows: mirror.rows,
        pid: proc?.pid ?? null,
      });
      if (exitReport) sendJson(exitReport);
    },
    onText(text) {
      const msg = parseMessage(ServerToAgent, text);
      if (!msg) {
        log.warn("malformed message from server", { text: text.slice(0, 200) });
        return;
      }
      switch (msg.type) {
        case "welcome":
          log.info("session", { label: msg.label });
          void begin(msg.restore);
          return;
        case "save_target":
        case "save_result":
          waiting.get(`${msg.type}:${msg.id}`)?.answer(msg);
          return;
        case "attach": {
          const { clientId, syncBack } = msg;
          void catchUp(clientId, msg.offset, msg.repaint).then(() => {
            if (!syncBack) return;
            if (phase === "running") syncSender.subscribe(clientId, syncBack);
            else early.set(clientId, syncBack);
          });
          return;
        }
        case "detach":
          syncSender.unsubscribe(msg.clientId);
          early.delete(msg.clientId);
          return;
        case "resize":
          if (msg.cols === mirror.cols && msg.rows === mirror.rows) return;
          mirror.resize(msg.cols, msg.rows);
          proc?.resize(msg.cols, msg.rows);
          return;
        case "stop":
          stop(msg.reason);
          return;
        case "exit_ack":
          link.close();
          finish(exitReport?.code ?? 1);
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
      for (const w of [...waiting.values()]) w.fail(new Error("the link to the server dropped"));
      syncSender.unsubscribeAll();
    },
    onBinary(data) {
      if (proc) proc.write(data);
      else if (phase !== "failed") typeahead.push(data); // typed before the program started
    },
    onEnded(reason) {
      log.warn("server says the session has ended; stopping", { reason });
      if (!proc) {
        finish(1);
        return;
      }
      stop(reason);
      void exited.then((code) => finish(code));
    },
  };

  const link = deps.dial(handlers);
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  const saver = new WorkspaceSaver({
    workspace: config.workspace,
    stateDir: config.stateDir,
    log,
    firstDelayMs: config.saveFirstMs,
    intervalMs: config.saveIntervalMs,
    transport: {
      target: async (id, reason) => {
        const answer = await request<Extract<ServerToAgent, { type: "save_target" }>>(id, "save_target", {
          type: "save_request",
          id,
          reason,
        });
        if (!answer.url) throw new Error(answer.error ?? "the server gave no place to save to");
        return new URL(answer.url, `${config.serverUrl}/`).toString();
      },
      done: async (id, stats) => {
        const answer = await request<Extract<ServerToAgent, { type: "save_result" }>>(id, "save_result", {
          type: "save_done",
          id,
          ...stats,
        });
        if (!answer.ok) throw new Error(answer.error ?? "the server refused the save");
      },
    },
  });

  const journal = new WorkspaceJournal({
    root: config.workspace,
    log,
    scanIntervalMs: config.syncScanMs,
    onChange: () => syncSender.changed(),
  });
  const syncSender = new SyncSender({
    journal,
    root: config.workspace,
    maxFileBytes: config.syncMaxBytes,
    send: sendJson,
    sendBinary: (data) => link.send(data),
    buffered: () => link.buffered,
    log,
  });
  /** Sync-back subscriptions that arrived before the journal was ready. */
  const early = new Map<number, SyncPosition>();

  /** Restores the initial workspace (once), then starts the program. */
  const begin = async (restore: { url: string; size: number | null } | null): Promise<void> => {
    if (phase !== "waiting") return;
    phase = "restoring";
    if (restore) {
      const file = join(config.stateDir, "restore.tar.gz");
      try {
        const res = await fetch(new URL(restore.url, `${config.serverUrl}/`));
        if (!res.ok || !res.body) throw new Error(`download failed: ${res.status} ${res.statusText}`);
        await Bun.write(file, res);
        const stats = await extractArchive(file, config.workspace, { into: "empty" });
        sendJson({ type: "restored", files: stats.files, bytes: stats.bytes });
        log.info("workspace restored", { ...stats });
      } catch (err) {
        const error = (err as Error).message;
        log.error("workspace restore failed", { error });
        exitReport = null;
        phase = "failed";
        sendJson({ type: "restore_failed", error });
        return;
      } finally {
        await rm(file, { force: true });
      }
    }
    await journal.start();
    for (const [clientId, from] of early) syncSender.subscribe(clientId, from);
    early.clear();
    startProgram();
  };

  const startProgram = (): void => {
    phase = "running";
    const resolved = resolveCommand(config.command, deps.which ?? ((n) => Bun.which(n)), process.env);
    if (resolved.notice) output(new TextEncoder().encode(resolved.notice));
    try {
      proc = deps.pty({
        argv: resolved.argv,
        cwd: config.workspace,
        env: programEnv(process.env),
        cols: mirror.cols,
        rows: mirror.rows,
        onData: output,
      });
      log.info("program started", { argv: resolved.argv, pid: proc.pid });
      for (const data of typeahead.splice(0)) proc.write(data);
      exited = proc.exited;
    } catch (err) {
      const message = `catty: could not start ${resolved.argv[0]}: ${(err as Error).message}\r\n`;
      output(new TextEncoder().encode(message));
      log.error("program failed to start", { argv: resolved.argv, err });
      exited = Promise.resolve(127);
    }
    saver.start();
    void exited.then(async (code) => {
      await journal.close();
      const finalSave = describeSave(await saver.finish());
      const snap = await mirror.snapshot({ scrollback: 200 });
      exitReport = { type: "exit", code, reason: stopReason, screen: snap.data, finalSave };
      log.info("program exited", { code, finalSave });
      sendJson(exitReport);
    });
    if (stopReason) stop(stopReason);
  };

  function stop(reason: string): void {
    stopReason ??= reason;
    if (!proc || killing) return; // without a program yet, it stops as soon as it starts
    killing = true;
    log.info("stopping program", { reason });
    proc.kill("SIGHUP");
    const timer = setTimeout(() => proc?.kill("SIGKILL"), STOP_GRACE_MS);
    void exited.then(() => clearTimeout(timer));
  }

  return { done };
}
