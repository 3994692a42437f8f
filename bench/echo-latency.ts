/**
 * Keystroke round trip as a terminal sees it: a byte written to the PTY master of `catty connect`
 * (the compiled CLI, talking to a real `catty-server` process and the compiled `catty-agent`),
 * until the program's echo of it is back on that master; and the same through `ssh -tt` to a
 * loopback sshd started by this run (bench/paths.ts). Both far ends run the same program, by
 * default `stty raw -echo; exec cat`, which echoes each byte as it comes. One byte in flight at a
 * time; the two paths take turns in blocks, the first of each pair alternating, so that drift in
 * the machine's load hits both alike.
 *
 *   ./node_modules/.bin/bun bench/echo-latency.ts [--rounds 1000] [--warmup 100] [--block 10]
 *       [--gap-ms 0] [--program "stty raw -echo; exec cat"] [--background CMD] [--bin-dir DIR]
 *       [--jump] [--samples FILE]
 *
 * `--gap-ms` waits between keystrokes, as a typist does: every process then wakes from idle.
 * `--background` runs CMD beside the echoing program, its output going to the same terminal —
 * typing while something prints (CMD must not print the letters a–z, which are the keys), e.g.
 * `--background "while :; do seq 3000; sleep 0.02; done"`.
 * `--jump` adds ssh through a jump host (`ssh -J`, the same sshd as both hosts) as a further
 * reference: a relay in the middle, as Catty's server is.
 * `--bin-dir` uses the binaries in DIR (e.g. built from another checkout) instead of building
 * them; given more than once, each build gets a path of its own, all measured in turn in one run
 * (to compare a change against the code before it, under the same load). `--samples` writes every measured keystroke as a JSON line with its send and echo times on
 * the machine's monotonic clock (CLOCK_MONOTONIC, ns), to line up with timestamps taken inside the
 * processes of an instrumented build.
 *
 * Needs `sshd` (installs Debian's openssh-server when it is missing). Cleans up everything it
 * started, also on failure or Ctrl+C, and exits non-zero only when something failed.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { benchTempDir, monotonicNs, percentile, runBench, wholeNumbers, withDeadline } from "./harness.ts";
import { settle, startCattyPaths, startSshPath, type Path } from "./paths.ts";

const TARGET_P50_RATIO = 1.3;
const TARGET_P99_RATIO = 1.5;
const ECHO_TIMEOUT_MS = 5_000;
const OVERALL_TIMEOUT_MS = 15 * 60_000;
/** Keys typed in turn: each round waits for its own byte, so a late echo never ends the wrong round. */
const KEYS = "abcdefghijklmnopqrstuvwxyz";

/** `performance.now()` (ms since this process started) on the machine's monotonic clock, in ns. */
function monotonicFromNow(): (ms: number) => bigint {
  const offsetNs = monotonicNs() - BigInt(Math.round(performance.now() * 1e6));
  return (ms) => offsetNs + BigInt(Math.round(ms * 1e6));
}

interface Sample {
  path: Path["name"];
  key: string;
  sent: number;
  echoed: number;
}

let keyIndex = 0;

/** Types one key and resolves once its echo is back. */
function roundTrip(path: Path): Promise<Sample> {
  const key = KEYS[keyIndex++ % KEYS.length] as string;
  const code = key.charCodeAt(0);
  return withDeadline(
    new Promise<Sample>((resolve) => {
      let sent = 0;
      path.onOutput = (data, at) => {
        if (!data.includes(code)) return;
        path.onOutput = null;
        resolve({ path: path.name, key, sent, echoed: at });
      };
      sent = performance.now();
      path.type(key);
    }),
    ECHO_TIMEOUT_MS,
    `${path.name}: echo of "${key}"`,
  );
}

function summary(samples: Sample[]): { p50: number; p90: number; p99: number } {
  const sorted = samples.map((s) => s.echoed - s.sent).sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "1000" },
      warmup: { type: "string", default: "100" },
      block: { type: "string", default: "10" },
      "gap-ms": { type: "string", default: "0" },
      program: { type: "string", default: "stty raw -echo; exec cat" },
      background: { type: "string" },
      jump: { type: "boolean", default: false },
      "bin-dir": { type: "string", multiple: true },
      samples: { type: "string" },
    },
  });
  const { rounds, warmup, block, "gap-ms": gapMs } = wholeNumbers(values, { rounds: 1, warmup: 0, block: 1, "gap-ms": 0 });

  const bg = values.background;
  const program = bg ? `(${bg}) & ${values.program}` : values.program;
  const tmp = benchTempDir("catty-bench-echo-");
  const paths = [...(await startCattyPaths(tmp, program, values["bin-dir"])), await startSshPath(tmp, program)];
  if (values.jump) paths.push(await startSshPath(tmp, program, { jump: true }));
  for (const p of paths) await settle(p, { expect: "x", probe: "x", busy: bg !== undefined });
  for (const p of paths) for (let i = 0; i < warmup; i++) await roundTrip(p);

  const samples = new Map<string, Sample[]>(paths.map((p) => [p.name, []]));
  for (let b = 0; [...samples.values()].some((list) => list.length < rounds); b++) {
    const order = b % 2 === 0 ? paths : [...paths].reverse();
    for (const p of order) {
      const list = samples.get(p.name) as Sample[];
      const n = Math.min(block, rounds - list.length);
      for (let i = 0; i < n; i++) {
        list.push(await roundTrip(p));
        if (gapMs > 0) await Bun.sleep(gapMs);
      }
    }
  }

  if (values.samples) {
    const toMonotonicNs = monotonicFromNow();
    const lines = [...samples.values()].flat().map((s) =>
      JSON.stringify({ path: s.path, key: s.key, sentNs: String(toMonotonicNs(s.sent)), echoedNs: String(toMonotonicNs(s.echoed)) }),
    );
    writeFileSync(values.samples, `${lines.join("\n")}\n`);
  }

  const ssh = summary(samples.get("ssh") as Sample[]);
  const ms = (v: number): string => `${v.toFixed(3)} ms`.padStart(11);
  const ratio = (v: number): string => v.toFixed(2).padStart(11);
  const width = Math.max(32, ...paths.map((p) => p.name.length + 12));
  console.log(`${`keystroke round trip (n=${rounds})`.padEnd(width)}${"p50".padStart(11)}${"p90".padStart(11)}${"p99".padStart(11)}`);
  for (const p of paths) {
    const s = summary(samples.get(p.name) as Sample[]);
    const label = p.name.startsWith("ssh") ? `${p.name} -tt (loopback sshd)` : p.name.replace(/^catty/, "catty connect");
    console.log(`${label.padEnd(width)}${ms(s.p50)}${ms(s.p90)}${ms(s.p99)}`);
  }
  for (const p of paths.filter((p) => p.name !== "ssh")) {
    const c = summary(samples.get(p.name) as Sample[]);
    const targets = p.name.startsWith("catty") ? `   (targets: p50 ≤ ${TARGET_P50_RATIO}, p99 ≤ ${TARGET_P99_RATIO})` : "";
    console.log(
      `${`ratio ${p.name}/ssh`.padEnd(width)}${ratio(c.p50 / ssh.p50)}${ratio(c.p90 / ssh.p90)}${ratio(c.p99 / ssh.p99)}${targets}`,
    );
  }
  const pace = gapMs > 0 ? `${gapMs} ms between keystrokes` : "keystrokes back to back";
  console.log(`(measured at the PTY masters; ${pace}; far end: sh -c "${program}")`);
}

await runBench("echo-latency", OVERALL_TIMEOUT_MS, main);
