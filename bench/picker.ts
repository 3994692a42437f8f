/**
 * The session picker's start, as a user meets it: the compiled `catty list` under a PTY, from the
 * exec until its first frame (the table's header and the key line) arrives on the terminal, with
 * 10 sessions on a local server; against `catty list --plain` (the same request, a plain table)
 * and `tmux -V` (a terminal program that draws nothing), in the same run, taking turns.
 * Target: the picker's p50 ≤ 150 ms.
 *
 *   ./node_modules/.bin/bun bench/picker.ts [--rounds 20] [--bin-dir DIR]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createApiClient } from "../src/client/api.ts";
import { benchTempDir, cleanups, compiledBinaries, percentile, runBench, spawnInPty, startServerProcess, wholeNumbers, withDeadline } from "./harness.ts";

const TARGET_MS = 150;

/** ms from the spawn until `done(output)` holds; then the command is ended. */
async function timeUnderPty(argv: string[], env: Record<string, string | undefined>, done: (out: string) => boolean): Promise<number> {
  let out = "";
  let resolveSeen: (at: number) => void = () => {};
  const seen = new Promise<number>((resolve) => (resolveSeen = resolve));
  const start = performance.now();
  const cmd = spawnInPty(argv, {
    env,
    cols: 120,
    rows: 30,
    onOutput: (data, at) => {
      out += new TextDecoder().decode(data);
      if (done(out)) resolveSeen(at);
    },
  });
  // (The PTY may deliver the last output after the exit is known: wait for the output itself.)
  const at = await withDeadline(seen, 10_000, `${argv.join(" ")}'s output (so far: ${JSON.stringify(out.slice(-200))})`);
  await cmd.stop();
  return at - start;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: "string", default: "20" }, "bin-dir": { type: "string" } } });
  const { rounds } = wholeNumbers(values, { rounds: 1 });
  const tmp = benchTempDir("catty-bench-picker-");
  const bins = await compiledBinaries(values["bin-dir"]);
  const server = await startServerProcess(join(tmp, "server"), { bin: bins.server, env: { CATTY_SANDBOX: "none" } });
  const api = createApiClient(server.url, server.token);
  for (let i = 0; i < 10; i++) {
    const s = await api.create({ command: ["sleep", "600"], cols: 80, rows: 24 });
    cleanups.push({ what: `session ${s.label}`, run: () => api.stop(s.label) });
  }
  // (As on a user's terminal: under CI catty prints the table instead.)
  const env = { ...process.env, CI: undefined, CONTINUOUS_INTEGRATION: undefined, CATTY_API_ADDR: server.url, CATTY_TOKEN: server.token, CATTY_HOME: join(tmp, "home") };
  const picker: number[] = [];
  const plain: number[] = [];
  const tmux: number[] = [];
  for (let i = 0; i <= rounds; i++) {
    const p = await timeUnderPty([bins.catty, "list"], env, (o) => o.includes("LABEL") && o.includes("q quit"));
    const t = await timeUnderPty([bins.catty, "list", "--plain"], env, (o) => o.includes("LABEL") && o.split("\n").filter((l) => / running /.test(l)).length >= 10);
    const x = await timeUnderPty(["tmux", "-V"], env, (o) => o.includes("tmux"));
    if (i === 0) continue; // the first round warms the page cache
    picker.push(p);
    plain.push(t);
    tmux.push(x);
  }
  const p50 = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
  const p99 = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 99);
  const row = (name: string, xs: number[]): string => `${name.padEnd(44)}${p50(xs).toFixed(1).padStart(9)} ms${p99(xs).toFixed(1).padStart(9)} ms`;
  console.log(`start to first frame (n=${rounds}, 10 sessions)             p50         p99`);
  console.log(row("catty list (the picker, under a PTY)", picker));
  console.log(row("catty list --plain (the table)", plain));
  console.log(row("tmux -V (reference)", tmux));
  console.log(`ratio picker/table                          ${(p50(picker) / p50(plain)).toFixed(2).padStart(9)}`);
  console.log(`target: picker p50 ≤ ${TARGET_MS} ms: ${p50(picker) <= TARGET_MS ? "met" : "missed"}`);
}

await runBench("picker", 5 * 60_000, main);
