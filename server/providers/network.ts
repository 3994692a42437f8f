/**
 * A network of its own for each sandboxed local session: a network namespace with its own
 * loopback, outbound access through a user-space NAT, and the server's egress policy enforced by
 * nftables rules inside the namespace.
 *
 * The NAT is `pasta` (Debian's `passt` package) rather than `slirp4netns`: pasta has no TCP/IP
 * stack of its own — it maps the namespace's connections onto ordinary sockets of the host
 * (near native throughput, the host's routing and DNS) — can bind a DNS address of the namespace
 * to the host's resolver (`--dns-forward`), and takes an existing namespace by path. Its port
 * mappings are all switched off (`-t/-u/-T/-U none`) and so is the gateway's mapping to the
 * host (`--no-map-gw`): nothing of the host's loopback is reachable from the session, and nothing
 * of the session from the host. Debian 12's pasta drops to `nobody` before it joins a namespace,
 * which root's namespaces refuse, so it keeps root (`--runas 0`); it confines itself (an empty
 * mount namespace, a seccomp filter) before it handles a packet.
 *
 * The rules: a table in the session's namespace, set up before the agent (and so the program)
 * starts. The program runs as an unprivileged host uid without capabilities (server/providers/
 * sandbox.ts) in that namespace, which belongs to the host's user namespace: it cannot change the
 * rules, and a user namespace it makes for itself gets no rights over this one. Under `none` there
 * is no NAT at all (only the allow-list, when there is one).
 *
 * Catty's own services stay reachable under every policy through the agent, which is outside the
 * namespace (agent/netns.ts): a bridge it starts inside the namespace listens on the session's
 * loopback (`SESSION_API_PORT`) for the Claude API proxy, and reaches the session's ports for
 * forwards.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { egressRules, resolveAllow, type AllowEntry, type EgressPolicy } from "../../src/lib/egress.ts";

/** The session's DNS server: an address of its namespace pasta answers with the host's resolver. */
export const SESSION_DNS = "169.254.1.53";

export interface SessionNetworkOptions {
  policy: EgressPolicy;
  allow: AllowEntry[];
  /** Names this server's namespaces apart from another's on the same host (its data dir). */
  dataDir: string;
}

/** What the sandbox needs of a session's network. */
export interface PreparedNetwork {
  /** The namespace, as a path `nsenter --net=` takes. */
  netns: string;
  /** A resolv.conf naming the session's DNS server (none under `none`). */
  resolvConf: string | null;
}

export interface SessionNetworks {
  /** What applies, for the log. */
  readonly summary: string;
  /** Makes the namespace of a session, its rules and its NAT. `dir`: the session's own directory. */
  create(label: string, dir: string): Promise<PreparedNetwork>;
  /** Removes a session's namespace (its NAT goes with it). */
  remove(label: string): void;
}

/** Which server's data dir each session namespace on this host belongs to (for the sweep). */
const REGISTRY = "/run/catty-netns";

/** The programs a network per session needs, as `apt-get install` names them. */
const TOOLS: Record<string, string> = { ip: "iproute2", nsenter: "util-linux", nft: "nftables", pasta: "passt" };

/**
 * Networks per session for a server running as root; throws, saying what to install, when a tool
 * is missing (a server asked for egress rules it cannot set up must not run sessions open).
 */
export function createSessionNetworks(opts: SessionNetworkOptions): SessionNetworks {
  const missing = Object.entries(TOOLS).filter(([bin]) => !Bun.which(bin, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }));
  if (missing.length > 0) {
    throw new Error(
      `sandboxed sessions get a network of their own, which needs ${missing.map(([b]) => b).join(", ")}: ` +
        `install them (apt-get install ${[...new Set(missing.map(([, p]) => p))].join(" ")}) and restart catty-server`,
    );
  }
  const tool = (bin: string): string => Bun.which(bin, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` }) as string;
  const prefix = `catty-${createHash("sha256").update(opts.dataDir).digest("hex").slice(0, 6)}-`;
  const name = (label: string): string => `${prefix}${label}`;
  const run = (args: string[], input?: string): void => {
    const r = Bun.spawnSync(args, { stdin: input === undefined ? "ignore" : new TextEncoder().encode(input), stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${args.slice(0, 4).join(" ")} failed: ${r.stderr.toString().trim() || `exit ${r.exitCode}`}`);
  };
  const removeNamed = (ns: string): void => {
    if (existsSync(`/run/netns/${ns}`)) Bun.spawnSync([tool("ip"), "netns", "delete", ns], { stdout: "ignore", stderr: "ignore" });
    rmSync(join(REGISTRY, ns), { force: true });
  };
  const remove = (label: string): void => removeNamed(name(label));
  const nat = opts.policy !== "none" || opts.allow.length > 0;
  // A session's agent removes its namespace as it goes (agent/netns.ts); one whose agent never
  // started its bridge, or was killed with it, may leave some. Each is recorded with its server's
  // data dir: gone once its agent is, or its data dir (a server's, anywhere on this host).
  for (const ns of safeReaddir(REGISTRY)) {
    let dataDir = "";
    try {
      dataDir = readFileSync(join(REGISTRY, ns), "utf8");
    } catch {
      continue;
    }
    const label = ns.slice(`catty-xxxxxx-`.length);
    const pidFile = join(dataDir, "sessions", label, "agent.pid");
    const gone = !existsSync(dataDir) || (ns.startsWith(prefix) ? !agentAlive(pidFile) : existsSync(pidFile) && !agentAlive(pidFile));
    if (gone) removeNamed(ns);
  }
  return {
    summary: `a network namespace each, egress ${opts.policy}${opts.allow.length ? ` plus ${opts.allow.map((a) => (a.port ? `${a.host}:${a.port}` : a.host)).join(", ")}` : ""}${nat ? " (NAT: pasta)" : ""}`,
    async create(label, dir) {
      const ns = name(label);
      const netns = `/run/netns/${ns}`;
      const allow = await resolveAllow(opts.allow);
      remove(label); // left from a session of that label this server lost track of
      mkdirSync(REGISTRY, { recursive: true, mode: 0o700 });
      writeFileSync(join(REGISTRY, ns), opts.dataDir, { mode: 0o600 });
      run([tool("ip"), "netns", "add", ns]);
      try {
        run([tool("ip"), "-n", ns, "link", "set", "lo", "up"]);
        run([tool("nsenter"), `--net=${netns}`, "--", tool("nft"), "-f", "-"], egressRules(opts.policy, allow, { dns: [SESSION_DNS] }));
        if (nat) {
          // Forks into the background once the namespace is configured; quits when it is deleted.
          run([
            tool("pasta"), "--config-net", "--netns", netns, "--runas", "0",
            "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw",
            "--dns-forward", SESSION_DNS, "-q", "-l", join(dir, "pasta.log"), "--log-size", "1048576",
          ]);
        }
      } catch (err) {
        remove(label);
        throw new Error(`could not set up the session's network: ${(err as Error).message}`);
      }
      let resolvConf: string | null = null;
      if (opts.policy !== "none") {
        resolvConf = join(dir, "resolv.conf");
        writeFileSync(resolvConf, `nameserver ${SESSION_DNS}\noptions edns0\n`, { mode: 0o644 });
      }
      return { netns, resolvConf };
    },
    remove,
  };
}

export function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Whether the agent whose pid is in `pidFile` still runs. */
export function agentAlive(pidFile: string): boolean {
  try {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 1) return false;
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Where a resolv.conf goes in the sandbox: over the host's file, or over what its symlink names. */
export function resolvConfTarget(): string {
  try {
    return lstatSync("/etc/resolv.conf").isSymbolicLink() ? realpathSync("/etc/resolv.conf") : "/etc/resolv.conf";
  } catch {
    return "/etc/resolv.conf";
  }
}
