/**
 * Bulk output as a terminal sees it: a program prints `--mb` MB as fast as it can (`yes 'some
 * line of text' | head -c …`), drained from the PTY master of `catty connect` and of `ssh -tt` to
 * a loopback sshd (bench/paths.ts). Prints MB/s of each (the program's bytes over the time from
 * the key that starts a round until its end marker is on the master), their ratio, and the CPU
 * seconds each process of each path used per round, from /proc — so the cost lands on the process
 * that pays it (the client, the relays, the program, and this bench as the terminal), counting
 * what they still do after the end marker until they are idle again.
 *
 *   ./node_modules/.bin/bun bench/bulk-output.ts [--mb 256] [--rounds 2] [--bin-dir DIR…]
 *
 * `--bin-dir` uses the binaries in DIR instead of building them; given more than once, each build
 * gets a path of its own, measured in turn in one run (to compare a change under the same load).
 *
 * The far end stays up between rounds: it waits for a key, prints, prints an end marker, and waits
 * again; the paths take turns, the first of each pair alternating. Catty's local terminal keeps
 * output post-processing on (its raw mode turns LF into CR LF, ssh's does not), so its master
 * carries one byte more per line; the rate counts the program's bytes for both. A Catty client
 * that falls too far behind is sent the screen instead of the bytes it missed: such a round is
 * marked as having skipped output (its rate is then the time to the final screen, not to every
 * byte). A round whose output stops reaching the terminal for 10 s has stalled: the path is
 * not measured again, and the run fails after printing the rest.
 *
 * Needs `sshd` (installs Debian's openssh-server when it is missing). Cleans up everything it
 * started, also on failure or Ctrl+C, and exits non-zero only when something failed.
 */
import { parseArgs } from "node:util";
import { benchTempDir, median, runBench, wholeNumbers } from "./harness.ts";
import { cpuByRole, settle, startCattyPaths, startSshPath, type Path } from "./paths.ts";

const TARGET_RATIO = 1.0;
const MB = 1_000_000;
const OVERALL_TIMEOUT_MS = 30 * 60_000;
/** A round whose output stops reaching the terminal for this long has stalled. */
const STALL_MS = 10_000;
const READY = "#ready#";
const DONE = "#done#";
const LINE = "some line of text";
const ESC = 0x1b;

/** Waits for a key, prints `bytes` bytes of lines and the end marker; again and again. */
const program = (bytes: number): string =>
  `stty raw -echo; printf '${READY}'; while head -c 1 >/dev/null; do yes '${LINE}' | head -c ${bytes}; printf '${DONE}'; done`;

interface Round {
  seconds: number;
  /** Bytes that reached the PTY master. */
  drained: number;
  /** The output stopped reaching the terminal before its end marker. */
  stalled: boolean;
  /**
   * The terminal got an escape sequence, which the program never prints: the client fell behind,
   * was sent the screen instead of the bytes it missed, and repainted.
   */
  repainted: boolean;
  /** CPU seconds by role, this bench (the terminal) included. */
  cpu: Record<string, number>;
}

/**
 * CPU seconds by role once the path's processes have stopped using CPU (for at most 15 s): work
 * left over after the end marker (the agent's screen mirror catching up) belongs to the round.
 */
async function cpuWhenIdle(path: Path): Promise<Record<string, number>> {
  const total = (c: Record<string, number>): number => Object.values(c).reduce((a, b) => a + b, 0);
  const deadline = Date.now() + 15_000;
  let before = cpuByRole(path);
  for (;;) {
    await Bun.sleep(250);
    const now = cpuByRole(path);
    // One clock tick (10 ms) in a quarter of a second is idle enough.
    if (total(now) - total(before) <= 0.01 || Date.now() > deadline) return now;
    before = now;
  }
}

/**
 * One round: a key, then output until the end marker (or until nothing has arrived for
 * `STALL_MS`); the time, the bytes, the CPU.
 */
async function round(path: Path): Promise<Round> {
  const before = cpuByRole(path);
  const benchBefore = process.cpuUsage();
  let drained = 0;
  let repainted = false;
  let tail = "";
  const started = performance.now();
  let last = started;
  let watchdog: Timer | undefined;
  const { ended, stalled } = await new Promise<{ ended: number; stalled: boolean }>((resolve) => {
    path.onOutput = (data, at) => {
      drained += data.length;
      last = at;
      repainted ||= data.includes(ESC);
      // Only the last few bytes can complete the marker: decoding every chunk would cost this process.
      tail = (tail + String.fromCharCode(...data.subarray(-DONE.length))).slice(-2 * DONE.length);
      if (tail.includes(DONE)) resolve({ ended: at, stalled: false });
    };
    watchdog = setInterval(() => {
      if (performance.now() - last > STALL_MS) resolve({ ended: last, stalled: true });
    }, 500);
    path.type("g");
  });
  clearInterval(watchdog);
  path.onOutput = null;
  const after = await cpuWhenIdle(path);
  const bench = process.cpuUsage(benchBefore);
  const cpu: Record<string, number> = {};
  for (const role of Object.keys(after)) cpu[role] = (after[role] ?? 0) - (before[role] ?? 0);
  cpu["terminal (this bench)"] = (bench.user + bench.system) / 1e6;
  return { seconds: (ended - started) / 1000, drained, stalled, repainted, cpu };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mb: { type: "string", default: "256" },
      rounds: { type: "string", default: "2" },
      "bin-dir": { type: "string", multiple: true },
    },
  });
  const { mb, rounds } = wholeNumbers(values, { mb: 1, rounds: 1 });
  const bytes = mb * MB;

  const tmp = benchTempDir("catty-bench-bulk-");
  const paths = [...(await startCattyPaths(tmp, program(bytes), values["bin-dir"])), await startSshPath(tmp, program(bytes))];
  for (const p of paths) await settle(p, { expect: READY });

  const results = new Map<string, Round[]>(paths.map((p) => [p.name, []]));
  const broken = new Set<string>();
  for (let r = 0; r < rounds; r++) {
    for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
      if (broken.has(p.name)) continue;
      const res = await round(p);
      if (res.stalled) {
        broken.add(p.name);
        console.error(`${p.name} round ${r + 1}: stalled after ${(res.drained / MB).toFixed(1)} MB at the terminal`);
        continue;
      }
      results.get(p.name)?.push(res);
      const skipped = res.repainted ? ` (skipped output: repainted from the screen; ${(res.drained / MB).toFixed(1)} MB reached the terminal)` : "";
      console.error(`${p.name} round ${r + 1}: ${(bytes / MB / res.seconds).toFixed(1)} MB/s${skipped}`);
    }
  }

  const col = (s: string, w = 12): string => s.padStart(w);
  const rate = (name: string): number | null => {
    const list = results.get(name) ?? [];
    return list.length ? median(list.map((r) => bytes / MB / r.seconds)) : null;
  };
  const width = Math.max(36, ...paths.map((p) => p.name.length + 24));
  console.log(`${`bulk output (${mb} MB, median of ${rounds})`.padEnd(width)}${col("MB/s")}${col("s")}`);
  for (const p of paths) {
    const r = rate(p.name);
    const label = p.name === "ssh" ? "ssh -tt (loopback sshd)" : p.name.replace(/^catty/, "catty connect");
    console.log(`${label.padEnd(width)}${r === null ? col("stalled") : `${col(r.toFixed(1))}${col((mb / r).toFixed(2))}`}`);
  }
  const ssh = rate("ssh");
  for (const p of paths.filter((p) => p.name !== "ssh")) {
    const catty = rate(p.name);
    const ratio = catty !== null && ssh !== null ? (catty / ssh).toFixed(2) : "-";
    console.log(`${`ratio ${p.name}/ssh (throughput)`.padEnd(width)}${col(ratio)}${" ".repeat(12)}   (target ≥ ${TARGET_RATIO})`);
  }

  console.log(`\nCPU seconds per round, by process (mean of the rounds that completed)`);
  for (const { name } of paths) {
    const list = results.get(name) ?? [];
    if (list.length === 0) continue;
    const mean = (f: (r: Round) => number): number => list.reduce((a, r) => a + f(r), 0) / list.length;
    const total = mean((r) => Object.values(r.cpu).reduce((a, b) => a + b, 0));
    const atMaster = (mean((r) => r.drained) / MB).toFixed(1);
    const skipped = list.filter((r) => r.repainted).length;
    const note = skipped ? `; output skipped (screen repainted) in ${skipped} of ${list.length}` : "";
    console.log(`  ${name}: wall ${mean((r) => r.seconds).toFixed(2)} s, CPU total ${total.toFixed(2)} s, ${atMaster} MB at the terminal${note}`);
    for (const role of Object.keys(list[0]?.cpu ?? {})) {
      console.log(`    ${role.padEnd(28)}${col(mean((r) => r.cpu[role] ?? 0).toFixed(2), 8)} s`);
    }
  }
  if (broken.size > 0) {
    throw new Error(`${[...broken].join(" and ")}: output stopped reaching the terminal for ${STALL_MS / 1000} s before its end`);
  }
}

await runBench("bulk-output", OVERALL_TIMEOUT_MS, main);
