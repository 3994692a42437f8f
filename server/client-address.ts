/**
 * Who a request comes from, for per-address limits, and the origin it was sent to. Behind a load
 * balancer or an Ingress every connection comes from the proxy, so its `X-Forwarded-For` is
 * believed when (and only when) the connection comes from an address the operator named
 * (`CATTY_TRUSTED_PROXIES`): the client is then the right-most address of that header that is
 * not itself a trusted proxy. Behind TLS termination the connection is plain HTTP whatever the
 * browser used, so the scheme comes from the trusted proxy's `X-Forwarded-Proto`, or from
 * `CATTY_PUBLIC_URL` when the request came to its host.
 */
import { BlockList, isIP } from "node:net";

/** Parses `10.0.0.0/8,192.168.1.7,fd00::/8`; throws naming the entry that is not an address or a CIDR. */
export function parseTrustedProxies(text: string): BlockList {
  const list = new BlockList();
  for (const raw of text.split(",")) {
    const entry = raw.trim();
    if (entry === "") continue;
    const [address = "", bits, extra] = entry.split("/");
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) {
      throw new Error(`"${entry}" is not an IP address or a CIDR range`);
    }
    const type = family === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

const trusts = (list: BlockList, address: string): boolean => {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
};

/** The client's address: `peer` itself, unless it is a trusted proxy that says who it forwards for. */
export function clientAddress(peer: string, forwardedFor: string | undefined, trusted: BlockList | null): string {
  if (!trusted || !forwardedFor || !trusts(trusted, peer)) return peer;
  const hops = forwardedFor.split(",").map((h) => h.trim());
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (isIP(hop) === 0) return peer; // a header we cannot read says nothing
    if (!trusts(trusted, hop)) return hop;
  }
  return hops[0] ?? peer;
}

/**
 * The origin the client sent `req` to (`https://catty.example.com`): the request's host, with the
 * scheme a trusted proxy (`peer`) names in `X-Forwarded-Proto`, else the public URL's when the
 * request came to the public URL's host, else the connection's own.
 */
export function publicOrigin(req: Request, peer: string, opts: { trustedProxies: BlockList | null; publicUrl: string | null }): string {
  const url = new URL(req.url);
  const forwarded = req.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
  if (opts.trustedProxies && trusts(opts.trustedProxies, peer) && (forwarded === "https" || forwarded === "http")) return `${forwarded}://${url.host}`;
  const pub = opts.publicUrl ? new URL(opts.publicUrl) : null;
  if (pub && pub.host === url.host) return pub.origin;
  return url.origin;
}
