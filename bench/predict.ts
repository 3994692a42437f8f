/**
 * Keystroke to screen over a long link: a recorded session of shell commands typed into bash
 * through `catty connect` (predictive echo, `CATTY_PREDICT`, default auto) and through `ssh -tt`
 * to a loopback sshd, each through a TCP proxy that delays both directions by half the round trip
 * (test/helpers/delay-proxy.ts), at 0, 50, 150 and 300 ms added. A keystroke counts as shown when
 * its character first reaches the client's PTY master (the prediction's drawing or the echo; for
 * Enter, any output). One keystroke at a time, the next once the output has been quiet for a
 * round trip, so no echo is taken for another key's.
 *
 *   ./node_modules/.bin/bun bench/predict.ts [--rtts 0,50,150,300] [--predict auto] [--rounds 1]
 *
 * Prints, per round trip and path, the share of keystrokes shown in under 5 ms, p50 and p99, and
 * catty's p50 against ssh's in the same run; and Debian's mosh (`mosh-server new` on loopback,
 * `mosh-client` with MOSH_KEY under a PTY, its UDP through a delaying proxy too; `--no-mosh` leaves it out).
 */
import { parseArgs } from "node:util";
import { DelayProxy } from "../test/helpers/delay-proxy.ts";
import { UdpDelayProxy } from "../test/helpers/udp-delay-proxy.ts";
import { benchTempDir, cleanups, percentile, runBench, wholeNumbers, withDeadline } from "./harness.ts";
import { settle, startCattyPath, startMoshPath, startSshPath, type Path } from "./paths.ts";

const OVERALL_TIMEOUT_MS = 20 * 60_000;
const SHOWN_AT_ONCE_MS = 5;
/** A shell session as typed: commands a user runs at a prompt. */
const SESSION = ["ls -la /tmp", "echo $HOME", "cd /tmp && pwd", "grep -c root /etc/passwd", "printf '%s\\n' hello world", "cd - >/dev/null", "echo done-typing"];
const PROGRAM = "PS1='$ ' exec bash --norc --noprofile -i";

/** Sends `key` and resolves with the ms until its character (any output, for Enter) reaches the client's terminal. */
function shown(path: Path, key: string): Promise<number> {
  const code = key.charCodeAt(0);
  return withDeadline(
    new Promise<number>((resolve) => {
      const sent = performance.now();
      path.onOutput = (data, at) => {
        if (key !== "\r" && !data.includes(code)) return;
        path.onOutput = null;
        resolve(at - sent);
      };
      path.type(key);
    }),
    10_000,
    `${path.name}: "${key}" shown`,
  );
}

/** Resolves once the terminal has had no output for `ms`. */
async function quiet(path: Path, ms: number): Promise<void> {
  let last = performance.now();
  path.onOutput = () => void (last = performance.now());
  while (performance.now() - last < ms) await Bun.sleep(Math.max(5, ms / 4));
  path.onOutput = null;
}

async function typeSession(path: Path, rttMs: number): Promise<number[]> {
  const times: number[] = [];
  for (const line of SESSION) {
    for (const key of [...line, "\r"]) {
      times.push(await shown(path, key));
      await quiet(path, rttMs + 40);
    }
  }
  return times;
}

function row(name: string, times: number[]): { p50: number; text: string } {
  const sorted = [...times].sort((a, b) => a - b);
  const share = (100 * times.filter((t) => t < SHOWN_AT_ONCE_MS).length) / times.length;
  const p50 = percentile(sorted, 50);
  const p99 = percentile(sorted, 99);
  return { p50, text: `${name.padEnd(28)}${String(times.length).padStart(6)}${`${share.toFixed(0)} %`.padStart(10)}${`${p50.toFixed(1)} ms`.padStart(11)}${`${p99.toFixed(1)} ms`.padStart(11)}` };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rtts: { type: "string", default: "0,50,150,300" },
      predict: { type: "string", default: "auto" },
      rounds: { type: "string", default: "1" },
      mosh: { type: "boolean", default: true },
    },
  });
  const { rounds } = wholeNumbers(values, { rounds: 1 });
  const rtts = values.rtts.split(",").map(Number);
  const tmp = benchTempDir("catty-bench-predict-");
  const proxies: DelayProxy[] = [];
  const proxy = (port: number): DelayProxy => {
    const p = DelayProxy.start({ port, rttMs: 0 });
    proxies.push(p);
    cleanups.push({ what: "delay proxy", run: () => p.stop() });
    return p;
  };
  const catty = await startCattyPath(tmp, PROGRAM, {
    clientEnv: { CATTY_PREDICT: values.predict },
    via: (port) => proxy(port).url,
  });
  const ssh = await startSshPath(tmp, PROGRAM, { via: (port) => Number(new URL(proxy(port).url).port) });
  const udp: UdpDelayProxy[] = [];
  const mosh = values.mosh
    ? await startMoshPath(PROGRAM, {
        via: async (port) => {
          const p = await UdpDelayProxy.start({ port, rttMs: 0 });
          udp.push(p);
          cleanups.push({ what: "udp delay proxy", run: () => p.stop() });
          return p.port;
        },
      })
    : null;
  const paths = mosh ? [catty, mosh, ssh] : [catty, ssh];
  for (const p of paths) await settle(p, { expect: "$ " });

  console.log(`${"keystroke to screen".padEnd(28)}${"n".padStart(6)}${`< ${SHOWN_AT_ONCE_MS} ms`.padStart(10)}${"p50".padStart(11)}${"p99".padStart(11)}`);
  for (const rtt of rtts) {
    for (const p of proxies) p.rttMs = rtt;
    for (const p of udp) p.rttMs = rtt;
    // The client measures the round trip on its heartbeat (every 5 s): let it see the new one.
    await Bun.sleep(6_000);
    const times = new Map<string, number[]>(paths.map((p) => [p.name, []]));
    for (let r = 0; r < rounds; r++) {
      // Taking turns, the first alternating, so drift in the machine's load hits all alike.
      const order = r % 2 === 0 ? paths : [...paths].reverse();
      for (const p of order) (times.get(p.name) as number[]).push(...(await typeSession(p, rtt)));
    }
    console.log(`— ${rtt} ms round trip added`);
    const c = row(`catty connect (predict ${values.predict})`, times.get("catty") as number[]);
    const s = row("ssh -tt", times.get("ssh") as number[]);
    console.log(c.text);
    if (mosh) console.log(row("mosh (mosh-client)", times.get("mosh") as number[]).text);
    console.log(s.text);
    console.log(`${"ratio catty/ssh p50".padEnd(28)}${(c.p50 / s.p50).toFixed(3).padStart(37)}`);
  }
  console.log("(measured at the clients' PTY masters; mosh over UDP through a delaying proxy, its prediction adaptive)");
}

await runBench("predict", OVERALL_TIMEOUT_MS, main);
