/**
 * The agent's way into a session that has a network of its own (server/providers/network.ts):
 * the program cannot reach the server (nor anything on the host's loopback), and the agent, on
 * the host's network, cannot reach the program's ports. A small bridge — this binary again, in
 * `--netns-bridge` mode, started with `nsenter --net` into the session's namespace, as the agent's
 * user, outside the sandbox — joins the two through Unix sockets in the agent's private state
 * directory (Unix sockets belong to no network namespace):
 *
 * - it listens on the session's loopback, `127.0.0.1:SESSION_API_PORT`, and passes each connection
 *   to `api.sock`, where the agent serves Catty's Claude API proxy only (`/v1/anthropic/…`,
 *   relayed to the server): the program's `ANTHROPIC_BASE_URL` points there, under every egress
 *   policy;
 * - it accepts connections on `ports.sock`, each starting with a line `HOST PORT`, and connects
 *   them to that port inside the namespace: how forwards reach the session's ports
 *   (agent/ports.ts `connectSessionPort`). The namespace's egress rules apply to it as to the
 *   program.
 *
 * The bridge says `ready` once both listen, and exits when its stdin (a pipe from the agent)
 * closes: it never outlives the agent, even one killed with SIGKILL. As it goes it removes the
 * namespace's name (`ip netns delete`), which ends the session's NAT (pasta quits when its
 * namespace's file goes): nothing of a session's network outlives its agent.
 */
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { connect, createServer, isIP, type Socket } from "node:net";
import { join } from "node:path";
import type { Log } from "../src/lib/log.ts";

/** The port on the session's own loopback where Catty's API (the Claude API proxy) answers. */
export const SESSION_API_PORT = 4815;

export interface NetnsBridge {
  /** The API's base URL as the program reaches it. */
  apiUrl: string;
  /** The Unix socket `connectSessionPort` dials. */
  portsSocket: string;
  close(): void;
}

/** This executable again: a compiled agent is its own file; run from source, Bun runs its entry script. */
function selfCommand(): string[] {
  const compiled = import.meta.path.startsWith("/$bunfs/") || import.meta.path.includes("~BUN");
  return compiled ? [process.execPath] : [process.execPath, join(import.meta.dir, "main.ts")];
}

/** Starts the agent's API relay and the bridge in the session's namespace; resolves once it is ready. */
export async function startNetnsBridge(opts: { netns: string; dir: string; serverUrl: string; log: Log; readyTimeoutMs?: number }): Promise<NetnsBridge> {
  const { dir, log } = opts;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const apiSocket = join(dir, "api.sock");
  rmSync(apiSocket, { force: true });
  const relay = startApiRelay({ unix: apiSocket }, opts.serverUrl, log);
  chmodSync(apiSocket, 0o600);
  const nsenter = Bun.which("nsenter", { PATH: `${process.env.PATH ?? ""}:/usr/bin:/usr/sbin:/bin:/sbin` }) ?? "nsenter";
  const child = Bun.spawn([nsenter, `--net=${opts.netns}`, "--", ...selfCommand(), "--netns-bridge", dir, String(SESSION_API_PORT), opts.netns], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const close = (): void => {
    relay.stop();
    // Its stdin closing is what ends it (as when the agent dies).
    void Promise.resolve(child.stdin.end()).catch(() => {});
  };
  const ready = await readLine(child.stdout, opts.readyTimeoutMs ?? 15_000);
  if (ready !== "ready") {
    close();
    throw new Error(`the network bridge into the session did not start (${ready ?? "no answer"}); see the agent's log`);
  }
  void child.exited.then((code) => log.warn("the network bridge into the session exited", { code }));
  log.info("network bridge ready", { netns: opts.netns, port: SESSION_API_PORT });
  return { apiUrl: `http://127.0.0.1:${SESSION_API_PORT}`, portsSocket: join(dir, "ports.sock"), close };
}

/**
 * Catty's API as the program reaches it: the Claude API proxy's paths (`/v1/anthropic/…`) relayed
 * to the server, nothing else. On a Unix socket (the bridge passes the namespace's connections to
 * it) or, where the agent shares the program's network (a container), on its loopback.
 */
export function startApiRelay(listen: { unix: string } | { hostname: string; port: number }, serverUrl: string, log: Log): { stop(): void } {
  const server = serverUrl.replace(/\/+$/, "");
  const relay = Bun.serve({
    ...listen,
    // A streamed answer may be quiet for a long while (a model thinking); Bun's types leave the
    // option out for a Unix socket, which it honours all the same.
    ...({ idleTimeout: 0 } as object),
    async fetch(req: Request) {
      const url = new URL(req.url);
      if (!url.pathname.startsWith("/v1/anthropic/")) {
        return Response.json({ type: "error", error: { type: "not_found_error", message: "only Catty's Claude API proxy (/v1/anthropic/) answers here" } }, { status: 404 });
      }
      const headers = new Headers(req.headers);
      for (const h of ["host", "connection", "keep-alive", "transfer-encoding", "content-length"]) headers.delete(h);
      try {
        const res = await fetch(`${server}${url.pathname}${url.search}`, {
          method: req.method,
          headers,
          body: req.method === "GET" || req.method === "HEAD" ? null : req.body,
          redirect: "manual",
          // A caller that goes (a permission hook the terminal answered first) ends the call upstream too.
          signal: req.signal,
        });
        // fetch has decoded the body: its length and encoding are not what is passed on.
        const out = new Headers(res.headers);
        for (const h of ["content-encoding", "content-length", "transfer-encoding", "connection"]) out.delete(h);
        return new Response(res.body, { status: res.status, headers: out });
      } catch (err) {
        log.warn("the Claude API relay could not reach the server", { err: (err as Error).message });
        return Response.json({ type: "error", error: { type: "api_error", message: "Catty's server is unreachable for now; try again" } }, { status: 502 });
      }
    },
  });
  return { stop: () => void relay.stop(true) };
}

async function readLine(stream: ReadableStream<Uint8Array>, timeoutMs: number): Promise<string | null> {
  const reader = stream.getReader();
  let text = "";
  let timer: Timer | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const read = (async (): Promise<string | null> => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text.trim() || null;
      text += new TextDecoder().decode(value);
      if (text.includes("\n")) return text.slice(0, text.indexOf("\n")).trim();
    }
  })();
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

/** Joins two sockets both ways, half-close included; an error on either ends both. */
function join2(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
  a.on("close", () => b.destroy());
  b.on("close", () => a.destroy());
}

/** The bridge's side, inside the session's namespace (`catty-agent --netns-bridge DIR PORT NETNS`). */
export function runNetnsBridge(dir: string, port: number, netns?: string): void {
  const api = createServer({ allowHalfOpen: true }, (c) => join2(c, connect({ path: join(dir, "api.sock"), allowHalfOpen: true })));
  const ports = createServer({ allowHalfOpen: true }, (c) => {
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const nl = head.indexOf(10);
      if (nl === -1) {
        if (head.length > 256) c.destroy();
        return;
      }
      c.off("data", onData);
      c.pause();
      const [host, p] = head.subarray(0, nl).toString().trim().split(" ");
      const target = Number(p);
      if (!host || isIP(host) === 0 || !Number.isInteger(target) || target < 1 || target > 65535) {
        c.destroy();
        return;
      }
      const out = connect({ host, port: target, allowHalfOpen: true });
      out.setNoDelay(true);
      const rest = head.subarray(nl + 1);
      if (rest.length > 0) out.write(rest);
      join2(c, out);
      c.resume();
    };
    c.on("data", onData);
    c.on("error", () => c.destroy());
  });
  const portsPath = join(dir, "ports.sock");
  rmSync(portsPath, { force: true });
  let listening = 0;
  const up = (): void => {
    if (++listening === 2) process.stdout.write("ready\n");
  };
  const fail = (err: Error): void => {
    process.stdout.write(`${err.message}\n`);
    process.exit(1);
  };
  api.on("error", fail).listen(port, "127.0.0.1", up);
  ports.on("error", fail).listen(portsPath, () => {
    chmodSync(portsPath, 0o600);
    up();
  });
  // Never outlives the agent: its stdin is a pipe from it.
  const bye = (): never => {
    const name = netns?.startsWith("/run/netns/") ? netns.slice("/run/netns/".length) : null;
    const ip = Bun.which("ip", { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }) ?? "ip";
    if (name && /^[\w.-]+$/.test(name)) Bun.spawnSync([ip, "netns", "delete", name], { stdout: "ignore", stderr: "ignore" });
    process.exit(0);
  };
  process.stdin.on("end", bye);
  process.stdin.on("close", bye);
  process.on("SIGTERM", bye);
  process.stdin.resume();
}
