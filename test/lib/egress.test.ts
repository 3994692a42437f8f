/**
 * The egress policy's parts that need no namespace (src/lib/egress.ts): the allow-list's syntax and the nftables rules
 * each policy makes (checked by nft itself when it is installed). The rules at work are tested
 * from inside sessions (test/e2e/sandbox.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { egressRules, NON_PUBLIC_V4, parseEgressAllow } from "../../src/lib/egress.ts";
import { SESSION_DNS } from "../../server/providers/network.ts";

describe("egress allow-list", () => {
  test("host:port, IP, CIDR and [v6]:port entries", () => {
    expect(parseEgressAllow("mirror.internal:443, 10.1.0.0/16,192.168.1.5,[fd00::1]:8080,fd00::/64")).toEqual([
      { host: "mirror.internal", port: 443 },
      { host: "10.1.0.0/16", port: null },
      { host: "192.168.1.5", port: null },
      { host: "fd00::1", port: 8080 },
      { host: "fd00::/64", port: null },
    ]);
    expect(parseEgressAllow(undefined)).toEqual([]);
  });

  test("a malformed entry is an error naming it", () => {
    for (const bad of ["mirror:0", "10.0.0.0/33", "http://x", "a b:80", "mirror:99999"]) {
      expect(() => parseEgressAllow(bad)).toThrow(bad);
    }
  });
});

describe("egress rules", () => {
  const allow = [{ addresses: ["10.9.0.2"], port: 443 }, { addresses: ["fd00::/64"], port: null }];

  test("public: DNS and the allow-list first, then every non-public range refused", () => {
    const rules = egressRules("public", allow, { dns: [SESSION_DNS] });
    const order = (needle: string): number => rules.indexOf(needle);
    expect(order(`ip daddr ${SESSION_DNS} udp dport 53 accept`)).toBeGreaterThan(0);
    expect(order("ip daddr 10.9.0.2 tcp dport 443 accept")).toBeGreaterThan(0);
    expect(order("ip6 daddr fd00::/64 accept")).toBeGreaterThan(0);
    for (const range of NON_PUBLIC_V4) expect(rules).toContain(range);
    expect(order("ip daddr 10.9.0.2 tcp dport 443 accept")).toBeLessThan(order("10.0.0.0/8"));
    expect(rules).not.toContain("    goto refuse\n");
  });

  test("none: no DNS, everything but the allow-list refused; all: nothing refused", () => {
    const none = egressRules("none", [], { dns: [SESSION_DNS] });
    expect(none).not.toContain("dport 53 accept");
    // DNS on loopback (Docker's resolver) too.
    expect(none.indexOf("th dport 53 goto refuse")).toBeLessThan(none.indexOf('oif "lo" accept'));
    expect(none).toContain("    goto refuse\n");
    const all = egressRules("all", [], { dns: [SESSION_DNS] });
    expect(all).not.toContain("goto refuse");
  });

  test("an exempt uid (the agent beside the program) passes first", () => {
    const rules = egressRules("none", [], { dns: [], exemptUid: 0 });
    expect(rules.indexOf("meta skuid 0 accept")).toBeLessThan(rules.indexOf("goto refuse"));
  });

  test.skipIf(!Bun.which("nft", { PATH: `${process.env.PATH}:/usr/sbin` }) || process.getuid?.() !== 0)("nft takes each policy's rules", () => {
    for (const policy of ["public", "all", "none"] as const) {
      const r = Bun.spawnSync(["unshare", "--net", "nft", "-c", "-f", "-"], { stdin: new TextEncoder().encode(egressRules(policy, allow, { dns: [SESSION_DNS, "fd00::53"], exemptUid: 0 })), stderr: "pipe" });
      expect({ policy, err: r.stderr.toString() }).toEqual({ policy, err: "" });
      expect(r.exitCode).toBe(0);
    }
  });
});
