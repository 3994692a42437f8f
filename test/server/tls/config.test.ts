/** The TLS settings as readServerConfig reads them: what --domain implies, and the mistakes it refuses. */
import { expect, test } from "bun:test";
import { readServerConfig } from "../../../server/config.ts";

const env = { HOME: "/tmp/catty-tls-config" };

test("no TLS settings: plain HTTP, as before", () => {
  expect(readServerConfig({}, env).tls).toBeNull();
});

test("--domain: HTTPS on 443 and HTTP on 80 on every interface, the public URL from the name, Let's Encrypt, renewal 30 days before expiry", () => {
  const c = readServerConfig({ domain: "catty.example.com" }, env);
  expect(c.tls).toMatchObject({ host: "0.0.0.0", httpsPort: 443, httpPort: 80, domain: "catty.example.com", files: null });
  expect(c.tls?.acme).toEqual({ directory: "https://acme-v02.api.letsencrypt.org/directory", email: null, renewDays: 30 });
  expect(c.publicUrl).toBe("https://catty.example.com");
  // The plain port stays on loopback.
  expect(c.host).toBe("127.0.0.1");
});

test("--domain with other ports, --host and CATTY_PUBLIC_URL: each as given", () => {
  const c = readServerConfig({ domain: "catty.example.com", host: "10.0.0.5", "https-port": "8443", "http-port": "8080" }, { ...env, CATTY_PUBLIC_URL: "https://catty.example.org" });
  expect(c.tls).toMatchObject({ host: "10.0.0.5", httpsPort: 8443, httpPort: 8080 });
  expect(c.publicUrl).toBe("https://catty.example.org");
  expect(readServerConfig({ domain: "catty.example.com", "https-port": "8443" }, env).publicUrl).toBe("https://catty.example.com:8443");
});

test("mistakes are refused naming the setting", () => {
  expect(() => readServerConfig({ domain: "https://catty.example.com" }, env)).toThrow("--domain must be a domain name");
  expect(() => readServerConfig({ "tls-cert": "/etc/cert.pem" }, env)).toThrow("--tls-cert and --tls-key go together");
  expect(() => readServerConfig({ domain: "catty.example.com", "https-port": "8080", "http-port": "8080" }, env)).toThrow("give them different ports");
  expect(() => readServerConfig({ domain: "catty.example.com" }, { ...env, CATTY_ACME_DIRECTORY: "http://ca.example.com/dir" })).toThrow("CATTY_ACME_DIRECTORY must be an https:// URL");
});
