import { describe, expect, test } from "bun:test";
import { clientAddress, parseTrustedProxies, publicOrigin } from "../../server/client-address.ts";
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

describe("the origin a client used behind TLS termination", () => {
  const trusted = parseTrustedProxies("10.0.0.7");
  const req = (url: string, proto?: string) => new Request(url, { headers: proto ? { "x-forwarded-proto": proto } : {} });

  test("a trusted proxy's X-Forwarded-Proto gives the scheme; anyone else's is ignored", () => {
    expect(publicOrigin(req("http://catty.example.com/v1/x", "https"), "10.0.0.7", { trustedProxies: trusted, publicUrl: null })).toBe("https://catty.example.com");
    expect(publicOrigin(req("http://catty.example.com/v1/x", "https, http"), "10.0.0.7", { trustedProxies: trusted, publicUrl: null })).toBe("https://catty.example.com");
    expect(publicOrigin(req("http://catty.example.com/v1/x", "https"), "10.0.0.8", { trustedProxies: trusted, publicUrl: null })).toBe("http://catty.example.com");
    expect(publicOrigin(req("http://catty.example.com/v1/x", "gopher"), "10.0.0.7", { trustedProxies: trusted, publicUrl: null })).toBe("http://catty.example.com");
  });

  test("CATTY_PUBLIC_URL gives the scheme of requests to its host, and no other", () => {
    const opts = { trustedProxies: null, publicUrl: "https://catty.example.com" };
    expect(publicOrigin(req("http://catty.example.com/"), "203.0.113.7", opts)).toBe("https://catty.example.com");
    expect(publicOrigin(req("http://127.0.0.1:4815/"), "127.0.0.1", opts)).toBe("http://127.0.0.1:4815");
    expect(publicOrigin(req("http://catty.example.com/", "http"), "203.0.113.7", opts)).toBe("https://catty.example.com");
  });
});
