import { describe, expect, test } from "bun:test";
import { clientAddress, parseTrustedProxies } from "../../server/client-address.ts";
import { readServerConfig } from "../../server/config.ts";

describe("the client's address behind proxies", () => {
  const trusted = parseTrustedProxies("10.0.0.0/8, 192.168.1.7,fd00::/8,::1");

  test("a trusted proxy's X-Forwarded-For names the client: its right-most untrusted hop", () => {
    expect(clientAddress("10.1.2.3", "203.0.113.7", trusted)).toBe("203.0.113.7");
    expect(clientAddress("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9", trusted)).toBe("203.0.113.7");
    expect(clientAddress("::1", "2001:db8::5", trusted)).toBe("2001:db8::5");
    expect(clientAddress("192.168.1.7", "10.0.0.1, 10.0.0.2", trusted)).toBe("10.0.0.1");
  });

  test("anyone else's header is ignored, and so is one that does not read as addresses", () => {
    expect(clientAddress("203.0.113.50", "10.0.0.1", trusted)).toBe("203.0.113.50");
    expect(clientAddress("192.168.1.8", "203.0.113.7", trusted)).toBe("192.168.1.8");
    expect(clientAddress("10.1.2.3", "unknown, <script>", trusted)).toBe("10.1.2.3");
    expect(clientAddress("10.1.2.3", undefined, trusted)).toBe("10.1.2.3");
    expect(clientAddress("10.1.2.3", "203.0.113.7", null)).toBe("10.1.2.3");
  });

  test("the setting takes addresses and CIDRs only", () => {
    expect(readServerConfig({}, { CATTY_TRUSTED_PROXIES: "10.0.0.0/8,::1" }).trustedProxies).toBe("10.0.0.0/8,::1");
    for (const bad of ["10.0.0.0/33", "ingress", "10.0.0.0/8/1", "fd00::/129"]) {
      expect(() => readServerConfig({}, { CATTY_TRUSTED_PROXIES: bad })).toThrow(/CATTY_TRUSTED_PROXIES/);
    }
  });
});
