/**
 * The session's listening ports as the agent reads them (agent/ports.ts): real processes
 * listening, found under the program's pid with their names, and nothing of other processes.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { createServer } from "node:net";
import { listeningPorts, parseTcpTable, PortWatch, processTree } from "../../agent/ports.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/wait.ts";

const procs: Subprocess[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) p.kill("SIGKILL");
});

describe("listening ports", () => {
  test("a listener two processes below the program is found, named by its process; the test's own is not", async () => {
    const port = freePort();
    const v6 = freePort();
    // bash → python3 listening on 127.0.0.1, and a second python3 on [::1].
    const program = Bun.spawn(
      ["bash", "-c", `python3 -m http.server ${port} --bind 127.0.0.1 & python3 -m http.server ${v6} --bind ::1 & wait`],
      { stdout: "ignore", stderr: "ignore" },
    );
    procs.push(program);
    // A listener of this process (not under the program) must not count.
    const mine = createServer().listen(0, "127.0.0.1");
    await new Promise((r) => mine.once("listening", r));
    try {
      const found = await waitFor(() => {
        const l = listeningPorts(program.pid);
        return l.length === 2 ? l : null;
      }, { what: "both listeners", timeoutMs: 15_000 });
      const byPort = new Map(found.map((l) => [l.port, l]));
      expect(byPort.get(port)).toEqual({ port, name: "python3", host: "127.0.0.1" });
      expect(byPort.get(v6)).toEqual({ port: v6, name: "python3", host: "0:0:0:0:0:0:0:1" });
      const myPort = (mine.address() as { port: number }).port;
      expect(found.some((l) => l.port === myPort)).toBe(false);
      expect(processTree(program.pid).length).toBeGreaterThanOrEqual(3);
    } finally {
      mine.close();
    }
  });

  test("the watch reports a change once, and again when the listener goes", async () => {
    const port = freePort();
    const program = Bun.spawn(["python3", "-m", "http.server", String(port), "--bind", "127.0.0.1"], { stdout: "ignore", stderr: "ignore" });
    procs.push(program);
    const reports: Array<Array<{ port: number; name: string }>> = [];
    let alive = true;
    const watch = new PortWatch({ pid: () => (alive ? program.pid : null), everyMs: 50, onChange: (p) => reports.push(p) });
    watch.start();
    try {
      await waitFor(() => reports.some((r) => r.some((p) => p.port === port)), { what: "the port", timeoutMs: 15_000 });
      expect(watch.lookup(port)?.name).toBe("python3");
      expect(watch.lookup(port + 1 === 65536 ? 1 : port + 1)).toBeNull();
      const before = reports.length;
      alive = false;
      await waitFor(() => reports.length > before && reports.at(-1)?.length === 0, { what: "the empty report" });
      expect(reports.filter((r) => r.some((p) => p.port === port))).toHaveLength(1);
    } finally {
      watch.stop();
    }
  });

  test("a port opened since the last scan is found when asked for (a forward to a server that just started)", async () => {
    const port = freePort();
    const program = Bun.spawn(["bash", "-c", `sleep 0.3; exec python3 -m http.server ${port} --bind 127.0.0.1`], { stdout: "ignore", stderr: "ignore" });
    procs.push(program);
    // No periodic scan within the test: only lookups scan.
    const watch = new PortWatch({ pid: () => program.pid, everyMs: 600_000, onChange: () => {} });
    watch.start();
    try {
      expect(watch.ports).toEqual([]);
      const found = await waitFor(() => watch.lookup(port), { what: "the new port", timeoutMs: 15_000 });
      expect(found).toEqual({ port, name: "python3", host: "127.0.0.1" });
    } finally {
      watch.stop();
    }
  });

  test("/proc/net tables: only LISTEN rows; wildcard addresses are reached on loopback; junk lines are skipped", () => {
    const v4 = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0",
      "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0",
      "   2: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100 0 0 10 0",
      "   3: garbage",
      "   4: 0100007F:0000 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1 0 100 0 0 10 0",
    ].join("\n");
    expect(parseTcpTable(v4, false)).toEqual([
      { inode: "111", host: "127.0.0.1", port: 3000 },
      { inode: "222", host: "127.0.0.1", port: 8080 },
    ]);
    const v6 = [
      "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0 100 0 0 10 0",
      "   1: 0000000000000000FFFF00000100007F:1539 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 666 1 0 100 0 0 10 0",
    ].join("\n");
    expect(parseTcpTable(v6, true)).toEqual([
      { inode: "555", host: "::1", port: 5432 },
      { inode: "666", host: "127.0.0.1", port: 5433 },
    ]);
  });
});
