/**
 * Resident memory of each process on Catty's path, as a user runs it: a real `catty-server`
 * process, a session running an idle shell under the compiled `catty-agent`, and `catty connect`
 * attached under a PTY (bench/paths.ts). Measured once the session is idle, and again after the
 * shell has printed 100,000 lines (the screen mirror's scrollback full). For reference, the same
 * for an empty program (`setInterval(() => {}, 1000)`) compiled by the same Bun — what any
 * compiled Bun executable costs before it does anything — plain and with `--smol`.
 *
 *   ./node_modules/.bin/bun bench/memory.ts [--sessions 1] [--bin-dir DIR] [--settle-ms 3000]
 *
 * Figures come from /proc/<pid>/status and smaps_rollup: VmRSS, split into anonymous memory
 * (heaps, stacks: the process's own) and file-backed pages (mostly the executable's code, shared
 * by every process running the same file, and given back under memory pressure), and PSS, which
 * divides each shared page among its sharers. `--sessions N` runs N such sessions side by side (a
 * server each, all from the same binaries), so the PSS shows what one more session costs. No
 * target of its own; cleans up everything it started.
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

/** The memory of each process of `paths` but the program, by role (numbered when there are several). */
function byRole(paths: Path[]): Record<string, Memory> {
  const out: Record<string, Memory> = {};
  for (const [i, path] of paths.entries()) {
    for (const [role, pids] of Object.entries(path.processes())) {
      if (role === "program") continue;
      const m = pids[0] === undefined ? null : memory(pids[0]);
      if (m) out[paths.length > 1 ? `${role} #${i + 1}` : role] = m;
    }
  }
  return out;
}

const MB = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`.padStart(10);

function print(title: string, rows: Record<string, Memory>): void {
  console.log(`${title.padEnd(40)}${["VmRSS", "anon", "file", "PSS"].map((h) => h.padStart(10)).join("")}`);
  for (const [name, m] of Object.entries(rows)) {
    console.log(`  ${name.padEnd(38)}${MB(m.rssKb)}${MB(m.anonKb)}${MB(m.fileKb)}${MB(m.pssKb)}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sessions: { type: "string", default: "1" },
      "bin-dir": { type: "string" },
      "settle-ms": { type: "string", default: "3000" },
    },
  });
  const { sessions, "settle-ms": settleMs } = wholeNumbers(values, { sessions: 1, "settle-ms": 0 });
  const tmp = benchTempDir("catty-bench-memory-");

  const paths: Path[] = [];
  for (let i = 0; i < sessions; i++) {
    paths.push(await startCattyPath(join(tmp, `session-${i}`), "exec sh", { binDir: values["bin-dir"] }));
  }
  // Quotes typed are echoed as typed: only the shell's output has the word whole.
  for (const path of paths) await settle(path, { expect: "READY", probe: "echo RE''ADY\r", quietMs: settleMs });
  print(`idle shell session${sessions > 1 ? "s" : ""}, attached`, byRole(paths));

  for (const path of paths) {
    path.type(`seq 1 ${LINES}; echo EN''D\r`);
    await settle(path, { expect: "END", quietMs: settleMs, timeoutMs: 120_000 });
  }
  print(`after ${LINES.toLocaleString("en")} lines of output`, byRole(paths));

  print("empty compiled Bun program, idle", {
    plain: await idleMemory(await compileEmpty(tmp, "empty", []), settleMs),
    "--smol": await idleMemory(await compileEmpty(tmp, "empty-smol", ["--smol"]), settleMs),
  });
}

await runBench("memory", OVERALL_TIMEOUT_MS, main);
