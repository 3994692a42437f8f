/**
 * A session's egress policy (`CATTY_SESSION_EGRESS`, `CATTY_SESSION_EGRESS_ALLOW`) as nftables
 * rules for the network namespace the program's traffic leaves by: a local session's own
 * namespace (set by the server, server/providers/network.ts) or a container's (set by its agent,
 * root there, exempt from the rules by its uid: agent/egress.ts). Shared by catty-server and
 * catty-agent.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

export type EgressPolicy = "public" | "all" | "none";

/** Ranges `public` keeps a session away from: private, loopback, link-local, shared, unique-local. */
export const NON_PUBLIC_V4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"];
/** The same for IPv6, with IPv4-mapped addresses (which would lead to the IPv4 ones). */
export const NON_PUBLIC_V6 = ["::1/128", "::ffff:0:0/96", "fc00::/7", "fe80::/10"];

/** One entry of `CATTY_SESSION_EGRESS_ALLOW`: an address or range, any port or one. */
export interface AllowEntry {
  /** A host name (resolved when a session starts), an IP address or a CIDR range. */
  host: string;
  port: number | null;
}

/** Parses `host:port,cidr,[v6]:port,…`; throws a message naming the entry at fault. */
export function parseEgressAllow(text: string | undefined): AllowEntry[] {
  if (!text?.trim()) return [];
  return text.split(",").map((raw) => {
    const entry = raw.trim();
    const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(entry);
    const m = v6 ?? /^([^\s:/]+(?:\/\d+)?|[0-9a-fA-F:]+(?:\/\d+)?)(?::(\d+))?$/.exec(entry);
    const host = m?.[1];
    const port = m?.[2] === undefined ? null : Number(m[2]);
    const cidr = host?.includes("/") ? host.split("/") : null;
    const okHost =
      host !== undefined &&
      (cidr
        ? isIP(cidr[0] as string) !== 0 && Number(cidr[1]) <= (isIP(cidr[0] as string) === 4 ? 32 : 128)
        : isIP(host) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(host));
    if (!okHost || (port !== null && (port < 1 || port > 65535))) {
      throw new Error(`"${entry}" is not host:port, an IP address or a CIDR range (e.g. mirror.internal:443,10.1.0.0/16)`);
    }
    return { host, port };
  });
}

/** An allow entry with its addresses. */
export interface ResolvedAllow {
  addresses: string[];
  port: number | null;
}

export async function resolveAllow(entries: AllowEntry[]): Promise<ResolvedAllow[]> {
  return Promise.all(
    entries.map(async ({ host, port }) => {
      if (host.includes("/") || isIP(host)) return { addresses: [host], port };
      const found = await lookup(host, { all: true }).catch((err: Error) => {
        throw new Error(`the egress allow-list names ${host}, which does not resolve (${err.message}); fix CATTY_SESSION_EGRESS_ALLOW`);
      });
      return { addresses: found.map((a) => a.address), port };
    }),
  );
}

/**
 * The nftables rules of a session's namespace (only what leaves it is filtered). `dns`: the
 * resolvers the session may ask (not under `none`); `exemptUid`: a uid whose traffic passes (the
 * agent's, when it shares the namespace); loopback always passes, but DNS there only when allowed.
 */
export function egressRules(policy: EgressPolicy, allow: ResolvedAllow[], opts: { dns: string[]; exemptUid?: number }): string {
  // Answers to connections made to the session (a forward, the host) are not egress: only a TCP
  // packet opening a connection (SYN without ACK) is judged. Not conntrack, which a container
  // cannot load where the host has not. The program cannot send a packet of its own making (no
  // CAP_NET_RAW), so its other TCP packets belong to connections that passed.
  const accept: string[] = ["meta l4proto tcp tcp flags & (syn | ack) != syn accept"];
  if (opts.exemptUid !== undefined) accept.push(`meta skuid ${opts.exemptUid} accept`);
  // A resolver on loopback (Docker's 127.0.0.11) is no way around `none`.
  if (policy === "none") accept.push("meta l4proto { tcp, udp } th dport 53 goto refuse");
  accept.push('oif "lo" accept');
  if (policy !== "none") {
    for (const dns of opts.dns) {
      const family = dns.includes(":") ? "ip6" : "ip";
      accept.push(`${family} daddr ${dns} udp dport 53 accept`, `${family} daddr ${dns} tcp dport 53 accept`);
    }
  }
  for (const { addresses, port } of allow) {
    for (const address of addresses) {
      const family = address.includes(":") ? "ip6" : "ip";
      if (port === null) accept.push(`${family} daddr ${address} accept`);
      else accept.push(`${family} daddr ${address} tcp dport ${port} accept`, `${family} daddr ${address} udp dport ${port} accept`);
    }
  }
  const refuse =
    policy === "none"
      ? ["goto refuse"]
      : policy === "public"
        ? [`ip daddr { ${NON_PUBLIC_V4.join(", ")} } goto refuse`, `ip6 daddr { ${NON_PUBLIC_V6.join(", ")} } goto refuse`]
        : [];
  return [
    "table inet catty {",
    "  chain refuse {",
    "    meta l4proto tcp reject with tcp reset",
    "    reject with icmpx admin-prohibited",
    "  }",
    "  chain output {",
    "    type filter hook output priority 0; policy accept;",
    ...[...accept, ...refuse].map((r) => `    ${r}`),
    "  }",
    "}",
    "",
  ].join("\n");
}
