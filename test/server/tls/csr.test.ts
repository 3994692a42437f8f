/** The CSR the ACME client sends is one OpenSSL reads, verifies and finds the names in. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { createCsr, derInteger, oid, pem } from "../../../server/tls/csr.ts";
import { tempDirs } from "../../helpers/fs.ts";

const tempDir = tempDirs("catty-csr-");

test("DER integers and object identifiers are encoded as X.509 wants", () => {
  expect([...derInteger(new Uint8Array([0, 0, 0x7f]))]).toEqual([2, 1, 0x7f]);
  expect([...derInteger(new Uint8Array([0x80]))]).toEqual([2, 2, 0, 0x80]);
  expect(Buffer.from(oid("1.2.840.10045.4.3.2")).toString("hex")).toBe("06082a8648ce3d040302");
});

test("a CSR for two names verifies with OpenSSL and names both", async () => {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const file = join(tempDir(), "req.pem");
  await Bun.write(file, pem("CERTIFICATE REQUEST", await createCsr(keys, ["catty.example.com", "www.catty.example.com"])));
  const p = Bun.spawnSync(["openssl", "req", "-in", file, "-verify", "-noout", "-text"], { stdout: "pipe", stderr: "pipe" });
  const out = p.stdout.toString() + p.stderr.toString();
  expect(p.exitCode).toBe(0);
  expect(out).toContain("verify OK");
  expect(out).toContain("CN = catty.example.com");
  expect(out).toContain("DNS:catty.example.com, DNS:www.catty.example.com");
});
