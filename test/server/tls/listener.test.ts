/**
 * The HTTPS listener's certificate swap: new connections get the new certificate at once, while a
 * connection in the middle of a long request stays on the old listener and finishes there, and
 * it does not hold up the next swap.
 */
import { expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { parseCertificate, type Certificate } from "../../../server/tls/certs.ts";
import { listenHttps } from "../../../server/tls/listener.ts";
import { tempDirs } from "../../helpers/fs.ts";
import { waitFor } from "../../helpers/wait.ts";

const tempDir = tempDirs("catty-listener-");

function selfSigned(dir: string, name: string): Certificate {
  const p = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", "/CN=catty.localhost", "-addext", "subjectAltName=DNS:catty.localhost"], { cwd: dir, stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return parseCertificate(readFileSync(join(dir, `${name}.crt`), "utf8"), readFileSync(join(dir, `${name}.key`), "utf8"));
}

const open = (port: number): Promise<TLSSocket> =>
  new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, servername: "catty.localhost", rejectUnauthorized: false }, () => resolve(s));
    s.on("error", reject);
  });

test("swaps serve new connections the new certificate; a request under way finishes on the old one", async () => {
  const dir = tempDir();
  const [a, b, c] = [selfSigned(dir, "a"), selfSigned(dir, "b"), selfSigned(dir, "c")];
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const listener = listenHttps({
    host: "127.0.0.1",
    port: 0,
    certs: [a],
    // /slow answers once the test says so: a request under way across the swaps.
    fetch: async (req) => (new URL(req.url).pathname === "/slow" ? released.then(() => new Response("slow done")) : new Response("ok")),
    websocket: { message() {} },
    maxRequestBodySize: 1024,
  });
  try {
    const held = await open(listener.port);
    const serialOf = async (): Promise<string> => {
      const s = await open(listener.port);
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      return serial;
    };
    const serials = (cert: Certificate): string => new X509Certificate(cert.cert).serialNumber;
    let answer = "";
    held.on("data", (d: Buffer) => (answer += d.toString()));
    held.write("GET /slow HTTP/1.1\r\nHost: catty.localhost\r\n\r\n");
    expect(held.getPeerCertificate().serialNumber).toBe(serials(a));
    await listener.swap([b]);
    expect(await serialOf()).toBe(serials(b));
    await listener.swap([c]);
    expect(await serialOf()).toBe(serials(c));
    release();
    await waitFor(() => answer.includes("slow done"), { what: "the request under way to finish" });
    held.end();
  } finally {
    await listener.stop(true);
  }
});
