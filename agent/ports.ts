/**
 * The TCP ports the session's programs listen on, read from their own view of the network, and
 * the one way the agent connects to them.
 *
 * The listening sockets come from `/proc/<pid>/net/tcp` and `tcp6` of the program's processes
 * (one read per network namespace among them), so it is the session's namespace that is read,
 * whether it shares the host's or has its own. A socket counts when one of the program's
 * processes holds it (its inode among their `/proc/<pid>/fd`), which is also where "· node" comes
 * from (`/proc/<pid>/comm`); in a namespace of the session's own, every listener there is the
 * session's even when the agent may not read the processes' descriptors.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect, type Socket } from "node:net";
import type { ListeningPort } from "../src/protocol/forward.ts";

export interface Listener extends ListeningPort {
  /** Where the agent connects to reach it (a wildcard listener is reached on loopback). */
  host: string;
}

const LISTEN = "0A";

/** The program's process and all its descendants (host pids). */
export function processTree(root: number, proc = "/proc"): number[] {
  const children = new Map<number, number[]>();
  for (const name of safeReaddir(proc)) {
    if (!/^\d+$/.test(name)) continue;
    const stat = safeRead(`${proc}/${name}/stat`);
    // `pid (comm) state ppid …`: the name may hold spaces and parentheses; the last ')' ends it.
    const after = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(after?.[1]);
    if (!Number.isInteger(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0 && out.length < 10_000) {
    const pid = stack.pop() as number;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** One `/proc/net/tcp{,6}` table's listeners: inode → host and port. */
export function parseTcpTable(text: string, v6: boolean): Array<{ inode: string; host: string; port: number }> {
  const out: Array<{ inode: string; host: string; port: number }> = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== LISTEN) continue;
    const [addr, portHex] = (f[1] as string).split(":");
    const port = Number.parseInt(portHex ?? "", 16);
    if (!addr || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    out.push({ inode: f[9] as string, host: v6 ? v6Host(addr) : v4Host(addr), port });
  }
  return out;
}

/** The kernel prints an IPv4 address as one 32-bit word in host (little-endian) order. */
function v4Host(hex: string): string {
  const bytes = [0, 1, 2, 3].map((i) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)).reverse();
  const ip = bytes.join(".");
  return ip === "0.0.0.0" ? "127.0.0.1" : ip;
}

/** An IPv6 address as four such words. */
function v6Host(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let i = 3; i >= 0; i--) bytes.push(Number.parseInt(word.slice(i * 2, i * 2 + 2), 16));
  }
  if (bytes.every((b) => b === 0)) return "::1";
  // An IPv4-mapped address (::ffff:a.b.c.d).
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    const v4 = bytes.slice(12).join(".");
    return v4 === "0.0.0.0" ? "127.0.0.1" : v4;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
  return groups.join(":");
}

/**
 * The ports the processes under `root` listen on, lowest first, each once (the first process
 * that holds it names it).
 */
export function listeningPorts(root: number, proc = "/proc"): Listener[] {
  const pids = processTree(root, proc);
  const owner = new Map<string, number>();
  const namespaces = new Map<string, { pid: number; fdsRead: boolean }>();
  for (const pid of pids) {
    const ns = safeReadlink(`${proc}/${pid}/ns/net`) ?? `pid:${pid}`;
    let fdsRead = false;
    const fds = safeReaddir(`${proc}/${pid}/fd`, () => (fdsRead = false));
    if (fds.length > 0) fdsRead = true;
    for (const fd of fds) {
      const m = /^socket:\[(\d+)\]$/.exec(safeReadlink(`${proc}/${pid}/fd/${fd}`) ?? "");
      if (m && !owner.has(m[1] as string)) owner.set(m[1] as string, pid);
    }
    const seen = namespaces.get(ns);
    if (!seen) namespaces.set(ns, { pid, fdsRead });
    else seen.fdsRead ||= fdsRead;
  }
  const own = safeReadlink(`${proc}/self/ns/net`);
  const found = new Map<number, Listener>();
  for (const [ns, { pid, fdsRead }] of namespaces) {
    // Unattributed listeners count only in a namespace that is not the agent's own (the host's).
    const all = !fdsRead && ns !== own && !ns.startsWith("pid:");
    for (const [file, v6] of [["tcp", false], ["tcp6", true]] as const) {
      const table = safeRead(`${proc}/${pid}/net/${file}`);
      if (!table) continue;
      for (const l of parseTcpTable(table, v6)) {
        const holder = owner.get(l.inode);
        if (holder === undefined && !all) continue;
        if (found.has(l.port)) continue;
        const name = holder === undefined ? "" : (safeRead(`${proc}/${holder}/comm`)?.trim() ?? "");
        found.set(l.port, { port: l.port, name: name.slice(0, 64), host: l.host });
      }
    }
  }
  return [...found.values()].sort((a, b) => a.port - b.port);
}

/**
 * A TCP connection to a port the session listens on, as the program would make it. Where the agent
 * shares the program's network namespace (the same container, or a sandbox on the host's network)
 * a plain connect reaches it. A session with a namespace of its own (a sandboxed local session)
 * is reached through the agent's bridge inside it (`bridge`: its Unix socket, agent/netns.ts),
 * told where to connect by a first line `HOST PORT`.
 */
export function connectSessionPort(listener: Listener, bridge?: string): Socket {
  if (bridge) {
    const socket = connect({ path: bridge, allowHalfOpen: true });
    socket.write(`${listener.host} ${listener.port}\n`);
    return socket;
  }
  const socket = connect({ host: listener.host, port: listener.port, allowHalfOpen: true });
  socket.setNoDelay(true);
  return socket;
}

function safeRead(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function safeReadlink(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function safeReaddir(path: string, onError?: () => void): string[] {
  try {
    return readdirSync(path);
  } catch {
    onError?.();
    return [];
  }
}

/** Same ports and names (the report goes out only when they change). */
export function samePorts(a: ListeningPort[], b: ListeningPort[]): boolean {
  return a.length === b.length && a.every((p, i) => p.port === b[i]?.port && p.name === b[i]?.name);
}

const MISS_SCAN_MS = 200;

/**
 * Watches the session's listening ports: a scan every `everyMs` while the program runs, reported
 * when they change; `lookup` answers from the last scan, or a new one for a port not seen yet.
 */
export class PortWatch {
  private current: Listener[] = [];
  private scannedAt = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly opts: { pid(): number | null; everyMs: number; onChange(ports: ListeningPort[]): void; proc?: string },
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.scan(), this.opts.everyMs);
    this.scan();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get ports(): ListeningPort[] {
    return this.current.map(({ port, name }) => ({ port, name }));
  }

  /**
   * The listener on `port`: from the last scan (the watch keeps it fresh), or — for a port not
   * seen yet, just opened — from a new scan, at most one every `MISS_SCAN_MS` (a client asking for
   * ports nothing listens on cannot make the agent scan /proc without pause).
   */
  lookup(port: number): Listener | null {
    const known = this.current.find((l) => l.port === port);
    if (known || Date.now() - this.scannedAt < MISS_SCAN_MS) return known ?? null;
    this.scan();
    return this.current.find((l) => l.port === port) ?? null;
  }

  private scan(): void {
    const pid = this.opts.pid();
    const next = pid === null ? [] : listeningPorts(pid, this.opts.proc);
    this.scannedAt = Date.now();
    const changed = !samePorts(next, this.current);
    this.current = next;
    if (changed) this.opts.onChange(this.ports);
  }
}
