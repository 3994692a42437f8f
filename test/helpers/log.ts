/** A log that keeps its lines, so tests can check what was logged (and how often). */
import type { Log } from "../../src/lib/log.ts";

export interface KeptLog extends Log {
  readonly lines: string[];
}

export function keptLog(opts: { echo?: boolean } = {}): KeptLog {
  const lines: string[] = [];
  const show = (_key: string, v: unknown): unknown => (v instanceof Error ? v.message : v);
  const at = (level: string) => (msg: string, extra?: Record<string, unknown>) => {
    const line = `${level} ${msg} ${JSON.stringify(extra ?? {}, show)}`;
    lines.push(line);
    if (opts.echo) console.error(line);
  };
  return { lines, debug: () => {}, info: at("info"), warn: at("warn"), error: at("error") };
}
