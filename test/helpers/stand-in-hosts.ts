/**
 * Stand-in hosts for the network isolation tests: a network namespace of the test's own, joined
 * to the host by a veth pair (this kernel has no dummy interfaces), holding an "internet" address
 * (in 203.0.113.0/24, a documentation range, not a private one), the "metadata service"
 * (169.254.169.254) and a "private service" (an address in 10/8), each reached from the host by a
 * route through the pair. One small HTTP server in the namespace answers on ports 80 and 81 of all
 * of them with the name of the address asked. Test traffic goes to loopback and to this namespace
 * only. Needs root and `ip`.
 *
 * `dispose()` removes the namespace, the pair and the routes; it also runs when the process
 * exits, so a failed test leaves nothing behind.
 */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface StandInHosts {
  /** The "internet" address. */
  internet: string;
  metadata: string;
  /** An address in 10/8 (an allow-list's internal mirror). */
  private: string;
  /** The ports every address answers on. */
  ports: readonly [number, number];
  dispose(): void;
}

const ip = (...args: string[]): { ok: boolean; err: string } => {
  const r = Bun.spawnSync(["ip", ...args], { stdout: "ignore", stderr: "pipe" });
  return { ok: r.exitCode === 0, err: r.stderr.toString().trim() };
};
const must = (...args: string[]): void => {
  const r = ip(...args);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.err}`);
};

const SERVER = `
const net = require("node:net");
for (const port of [80, 81]) {
  net.createServer((c) => {
    const name = c.localAddress.replace(/^::ffff:/, "");
    c.once("data", () => c.end("HTTP/1.0 200 OK\\r\\ncontent-type: text/plain\\r\\n\\r\\nhello from " + name + ":" + port + "\\n"));
    c.on("error", () => {});
  }).listen(port, "0.0.0.0", () => { if (port === 81) console.log("ready"); });
}
`;

export async function startStandInHosts(): Promise<StandInHosts> {
  const id = crypto.randomUUID().slice(0, 6);
  const ns = `catty-test-${id}`;
  const [outside, inside] = [`ctv${id}a`, `ctv${id}b`];
  // A /30 of 203.0.113.0/24 and an address of 10.250/16 no other run of these tests holds now.
  const n = Math.floor(Math.random() * 60) + 1;
  const [hostSide, internet] = [`203.0.113.${n * 4 + 1}`, `203.0.113.${n * 4 + 2}`];
  const priv = `10.250.${n}.2`;
  const metadata = "169.254.169.254";
  let child: ReturnType<typeof Bun.spawn> | null = null;
  const script = join(tmpdir(), `stand-in-${id}.cjs`);
  const routes: string[] = [];
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    child?.kill();
    rmSync(script, { force: true });
    for (const r of routes) ip("route", "del", r, "via", internet);
    ip("link", "del", outside);
    ip("netns", "delete", ns);
  };
  process.once("exit", dispose);
  try {
    must("netns", "add", ns);
    must("link", "add", outside, "type", "veth", "peer", "name", inside);
    must("link", "set", inside, "netns", ns);
    must("addr", "add", `${hostSide}/30`, "dev", outside);
    must("link", "set", outside, "up");
    must("-n", ns, "addr", "add", `${internet}/30`, "dev", inside);
    for (const a of [metadata, priv]) must("-n", ns, "addr", "add", `${a}/32`, "dev", inside);
    must("-n", ns, "link", "set", inside, "up");
    must("-n", ns, "link", "set", "lo", "up");
    must("-n", ns, "route", "add", "default", "via", hostSide);
    for (const a of [metadata, priv]) {
      // Another run may hold the metadata route: take it over (it is put back by that run's end).
      must("route", "replace", `${a}/32`, "via", internet);
      routes.push(`${a}/32`);
    }
    writeFileSync(script, SERVER);
    child = Bun.spawn(["ip", "netns", "exec", ns, process.execPath, script], { stdout: "pipe", stderr: "inherit" });
    const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
    const first = await Promise.race([reader.read(), Bun.sleep(15_000).then(() => null)]);
    if (!first || !new TextDecoder().decode(first.value).includes("ready")) throw new Error("the stand-in hosts' server did not start");
    reader.releaseLock();
  } catch (err) {
    dispose();
    throw err;
  }
  return { internet, metadata, private: priv, ports: [80, 81], dispose };
}
