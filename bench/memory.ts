/**
 * Resident memory of each process on Catty's path, as a user runs it: a real `catty-server`
 * process, a session running an idle shell under the compiled `catty-agent`, and `catty connect`
 * attached under a PTY (bench/paths.ts). Measured once the session is idle, and again after the
 * shell has printed 100,000 lines (the screen mirror's scrollback full). For reference, the same
 * for an empty program (`setInterval(() => {}, 1000)`) compiled by the same Bun — what any
 * compiled Bun executable costs before it does anything — plain and with `--smol`.
 *
 *   ./node_modules/.bin/bun bench/memory.ts [--bin-dir DIR] [--settle-ms 3000]
 *
 * Figures are VmRSS from /proc/<pid>/status, split into anonymous memory (heaps, stacks: this
 * process's own) and file-backed pages (mostly the executable itself, shared by every process that
 * runs it). No target of its own; cleans up everything it started.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { benchTempDir, cleanups, killAndWait, memory, runBench, wholeNumbers, type Memory } from "./harness.ts";
import { settle, startCattyPath, type Path } from "./paths.ts";

const OVERALL_TIMEOUT_MS = 5 * 60_000;
const LINES = 100_000;

/** An empty program, compiled as build.ts compiles ours, with `execArgv` baked in. */
async function compileEmpty(dir: string, name: string, execArgv: string[]): Promise<string> {
  const entry = join(dir, "empty.ts");
  writeFileSync(entry, "setInterval(() => {}, 1000);\n");
  const outfile = join(dir, name);
  const result = await Bun.build({ entrypoints: [entry], compile: { outfile, execArgv }, minify: true });
  if (!result.success) throw new Error(`could not compile the empty program: ${result.logs.join("\n")}`);
  return outfile;
}

/** Memory of a freshly started `bin` once it has been idle for `settleMs`. */
async function idleMemory(bin: string, settleMs: number): Promise<Memory> {
  const proc = Bun.spawn([bin], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  cleanups.push({ what: bin, run: () => killAndWait(proc) });
  await Bun.sleep(settleMs);
  const m = memory(proc.pid);
  await killAndWait(proc);
  if (!m) throw new Error(`${bin} exited early`);
  return m;
}

function byRole(path: Path): Record<string, Memory> {
  const out: Record<string, Memory> = {};
  for (const [role, pids] of Object.entries(path.processes())) {
    if (role === "program") continue;
    const m = pids[0] === undefined ? null : memory(pids[0]);
    if (m) out[role] = m;
  }
  return out;
}

const MB = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`.padStart(10);

function print(title: string, rows: Record<string, Memory>): void {
  console.log(`${title.padEnd(40)}${"VmRSS".padStart(10)}${"anon".padStart(10)}${"file".padStart(10)}`);
  for (const [name, m] of Object.entries(rows)) console.log(`  ${name.padEnd(38)}${MB(m.rssKb)}${MB(m.anonKb)}${MB(m.fileKb)}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "bin-dir": { type: "string" }, "settle-ms": { type: "string", default: "3000" } } });
  const { "settle-ms": settleMs } = wholeNumbers(values, { "settle-ms": 0 });
  const tmp = benchTempDir("catty-bench-memory-");

  const path = await startCattyPath(tmp, "exec sh", { binDir: values["bin-dir"] });
  // Quotes typed are echoed as typed: only the shell's output has the word whole.
  await settle(path, { expect: "READY", probe: "echo RE''ADY\r", quietMs: settleMs });
  print("idle shell session, attached", byRole(path));

  path.type(`seq 1 ${LINES}; echo EN''D\r`);
  await settle(path, { expect: "END", quietMs: settleMs, timeoutMs: 120_000 });
  print(`after ${LINES.toLocaleString("en")} lines of output`, byRole(path));

  print("empty compiled Bun program, idle", {
    plain: await idleMemory(await compileEmpty(tmp, "empty", []), settleMs),
    "--smol": await idleMemory(await compileEmpty(tmp, "empty-smol", ["--smol"]), settleMs),
  });
}

await runBench("memory", OVERALL_TIMEOUT_MS, main);
