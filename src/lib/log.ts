/**
 * A small line logger. Servers log to stderr; the CLI logs to a file so that nothing lands in
 * the user's terminal while it is in raw mode.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

import type { LogLevel } from "../protocol/settings.ts";

export type Level = LogLevel;
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Log {
  debug(msg: string, extra?: Record<string, unknown>): void;
  info(msg: string, extra?: Record<string, unknown>): void;
  warn(msg: string, extra?: Record<string, unknown>): void;
  error(msg: string, extra?: Record<string, unknown>): void;
}

export type LogFormat = "text" | "json";

/**
 * What the work in progress is about (`{ request }` for an HTTP request, `{ session }` for a
 * session's link): every line logged within `logContext.run(ctx, fn)` carries it.
 */
export const logContext = new AsyncLocalStorage<Record<string, unknown>>();

function format(fmt: LogFormat, level: Level, scope: string, msg: string, extra?: Record<string, unknown>): string {
  const context = logContext.getStore();
  const fields = context ? { ...context, ...extra } : extra;
  if (fmt === "json") {
    return `${JSON.stringify({ time: new Date().toISOString(), level, scope, msg, ...fields }, errorReplacer)}\n`;
  }
  const tail = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields, errorReplacer)}` : "";
  return `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} [${scope}] ${msg}${tail}\n`;
}

function errorReplacer(_key: string, value: unknown): unknown {
  return value instanceof Error ? { message: value.message, stack: value.stack } : value;
}

export function createLog(opts: { scope: string; file?: string; level?: Level; format?: LogFormat }): Log {
  const fmt = opts.format ?? "text";
  // Each binary reads CATTY_LOG_LEVEL with its settings and passes it in.
  const min = ORDER[opts.level ?? "info"];
  let fileReady = false;
  const write = (line: string): void => {
    if (!opts.file) {
      process.stderr.write(line);
      return;
    }
    try {
      if (!fileReady) {
        mkdirSync(dirname(opts.file), { recursive: true, mode: 0o700 });
        fileReady = true;
      }
      appendFileSync(opts.file, line, { mode: 0o600 });
    } catch {
      // A log that cannot be written must never take the program down.
    }
  };
  const at =
    (level: Level) =>
    (msg: string, extra?: Record<string, unknown>): void => {
      if (ORDER[level] >= min) write(format(fmt, level, opts.scope, msg, extra));
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };
