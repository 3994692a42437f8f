/**
 * Debian's `pebble` (the ACME test server Let's Encrypt publishes) on loopback, for the TLS tests:
 * its API over HTTPS with a certificate made here (`ca` trusts it: give it to the server as
 * NODE_EXTRA_CA_CERTS), `pebble-challtestsrv` as its DNS server answering 127.0.0.1 for every
 * name, and its HTTP-01 validation sent to `httpPort` (where the Catty server under test answers).
 * `PEBBLE_VA_NOSLEEP` and no bad nonces keep it quick and deterministic. `stop()` and `start()`
 * take it down and bring it back on the same ports (a certificate authority that is unreachable).
 */
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "./ports.ts";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { removeAfterRun } from "./fs.ts";
import { waitFor } from "./wait.ts";


export interface Pebble {
  directory: string;
  /** The CA file that trusts pebble's own API (its HTTPS certificate's issuer). */
  caFile: string;
  /** The port pebble validates HTTP-01 challenges on. */
  httpPort: number;
  /** The root that signs the certificates pebble issues, PEM. */
  root(): Promise<string>;
  stop(): Promise<void>;
  start(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export const havePebble = (): boolean => Bun.which("pebble") !== null && Bun.which("pebble-challtestsrv") !== null;

const sh = (args: string[], cwd: string): void => {
  const p = Bun.spawnSync(args, { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")}: ${p.stderr.toString()}`);
};

export async function startPebble(opts: { httpPort?: number } = {}): Promise<Pebble> {
  const dir = removeAfterRun(mkdtempSync(join(tmpdir(), "catty-pebble-")));
  // A CA and a certificate for pebble's API on 127.0.0.1 / localhost.
  sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pebble test CA"], dir);
  sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out", "req.pem", "-subj", "/CN=localhost"], dir);
  await Bun.write(join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  sh(["openssl", "x509", "-req", "-in", "req.pem", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf"], dir);
  const ports = { api: freePort(), management: freePort(), dns: freePort(), challtest: freePort(), http: opts.httpPort ?? freePort(), tls: freePort() };
  await Bun.write(
    join(dir, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${ports.api}`,
        managementListenAddress: `127.0.0.1:${ports.management}`,
        certificate: join(dir, "cert.pem"),
        privateKey: join(dir, "key.pem"),
        httpPort: ports.http,
        tlsPort: ports.tls,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const dns = Bun.spawn(
    ["pebble-challtestsrv", "-dns01", `127.0.0.1:${ports.dns}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${ports.challtest}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
    { stdout: "ignore", stderr: "ignore" },
  );
  let pebble: Subprocess | null = null;
  const directory = `https://127.0.0.1:${ports.api}/dir`;
  const ca = await Bun.file(join(dir, "ca.pem")).text();
  const up = async (): Promise<boolean> => (await fetch(directory, { tls: { ca } }).catch(() => null))?.ok === true;
  const start = async (): Promise<void> => {
    pebble = Bun.spawn(["pebble", "-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${ports.dns}`], {
      env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
      stdout: "ignore",
      stderr: "ignore",
    });
    await waitFor(up, { timeoutMs: 15_000, what: "pebble" });
  };
  const stop = async (): Promise<void> => {
    const p = pebble as Subprocess | null;
    pebble = null;
    if (!p) return;
    p.kill();
    await p.exited;
  };
  await start();
  return {
    directory,
    caFile: join(dir, "ca.pem"),
    httpPort: ports.http,
    // Pebble makes a new root each run: asked of its management API.
    root: async () => (await fetch(`https://127.0.0.1:${ports.management}/roots/0`, { tls: { ca } })).text(),
    stop,
    start,
    async [Symbol.asyncDispose]() {
      await stop();
      dns.kill();
      await dns.exited;
    },
  };
}
