/**
 * The ACME manager on its own, with a stored certificate and a certificate authority that fails:
 * the stored certificate is served at once, the failed renewal is logged with when it is tried
 * again, and the retries back off.
 */
import { expect, test } from "bun:test";
import { retryDelayMs, startAcmeManager } from "../../../server/tls/acme-manager.ts";
import type { Certificate } from "../../../server/tls/certs.ts";
import type { StoredCertificate, TlsStorage } from "../../../server/tls/storage.ts";
import { createLog } from "../../../src/lib/log.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { waitFor } from "../../helpers/wait.ts";
import { join } from "node:path";

const tempDir = tempDirs("catty-acme-manager-");

test("retries back off: 1 min, doubling, at most 6 h", () => {
  expect([0, 1, 2, 3].map(retryDelayMs)).toEqual([60_000, 120_000, 240_000, 480_000]);
  expect(retryDelayMs(9)).toBe(6 * 3_600_000);
  expect(retryDelayMs(1000)).toBe(6 * 3_600_000);
});

test("serves the stored certificate at once, and a failed renewal keeps it, logged with the next try", async () => {
  const dir = tempDir();
  const p = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out", "c.pem", "-days", "10", "-subj", "/CN=catty.localhost", "-addext", "subjectAltName=DNS:catty.localhost"], { cwd: dir, stderr: "pipe" });
  expect(p.exitCode).toBe(0);
  const stored: StoredCertificate = { cert: await Bun.file(join(dir, "c.pem")).text(), key: await Bun.file(join(dir, "k.pem")).text() };
  const storage: TlsStorage = {
    account: async () => null,
    saveAccount: async () => {},
    certificate: async () => stored,
    saveCertificate: async () => {
      throw new Error("nothing is issued here");
    },
    challenge: async () => null,
    publish: async () => {},
    unpublish: async () => {},
  };
  // A certificate authority that answers 503 to everything, on loopback.
  const ca = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("down", { status: 503 }) });
  const logFile = join(dir, "log");
  const served: Certificate[] = [];
  const manager = await startAcmeManager({
    domain: "catty.localhost",
    directory: `http://127.0.0.1:${ca.port}/dir`,
    email: null,
    renewDays: 30, // the certificate has 10 days left: due
    storage,
    log: createLog({ scope: "server", file: logFile, level: "info" }),
    onCertificate: async (c) => void served.push(c),
  });
  try {
    expect(served.map((c) => c.names)).toEqual([["catty.localhost"]]);
    const log = await waitFor(async () => {
      const text = await Bun.file(logFile).text().catch(() => "");
      return text.includes("could not renew") && text;
    }, { what: "the failed renewal in the log" });
    expect(log).toContain("HTTP 503");
    expect(log).toContain("trying again in 1 min");
    expect(log).toContain("still serving the current certificate");
    expect(manager.current()?.cert).toBe(stored.cert);
  } finally {
    manager.close();
    ca.stop(true);
  }
});
