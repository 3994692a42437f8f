/**
 * HTTPS served by catty-server itself, as a real process: `--tls-cert/--tls-key` serve the
 * operator's certificate and pick up a replaced one; the HTTP port redirects to HTTPS; with
 * `--domain` (against pebble, names resolving to loopback) a certificate is obtained over ACME,
 * served, renewed when it is near expiry, and kept while the certificate authority is down.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import { readdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { connect } from "node:tls";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { tempDirs } from "../../helpers/fs.ts";
import { freePort } from "../../helpers/ports.ts";
import { waitFor } from "../../helpers/wait.ts";
import { havePebble, startPebble, type Pebble } from "../../helpers/pebble.ts";
import { launchBrowser } from "../../helpers/browser.ts";
import { freshDatabase, postgresBin } from "../../helpers/postgres.ts";
import { startS3rver } from "../../helpers/s3.ts";

const SERVER = join(import.meta.dir, "../../../server/main.ts");
const CLI = join(import.meta.dir, "../../../src/cli.ts");
const tempDir = tempDirs("catty-tls-");
const running: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of running.reverse()) await stop();
});

interface Proc {
  out(): string;
  stop(): Promise<void>;
}

function startServer(args: string[], env: Record<string, string> = {}): Proc {
  const proc: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn([process.execPath, SERVER, "--port", "0", "--sandbox", "none", ...args], {
    env: { ...process.env, CATTY_LOG_LEVEL: "info", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  const read = async (stream: ReadableStream<Uint8Array>): Promise<void> => {
    for await (const chunk of stream) out += new TextDecoder().decode(chunk);
  };
  void read(proc.stdout);
  void read(proc.stderr);
  const stop = async (): Promise<void> => {
    proc.kill();
    await proc.exited;
  };
  running.push(stop);
  return { out: () => out, stop };
}

/** The certificate the server presents for `name` on `port`: its serial and subject's CN, and whether `ca` trusts it. */
function peer(port: number, name: string, ca?: string): Promise<{ serial: string; cn: string; trusted: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, servername: name, rejectUnauthorized: false, ...(ca ? { ca } : {}) }, () => {
      const cert = socket.getPeerCertificate();
      resolve({ serial: cert.serialNumber, cn: String(cert.subject?.CN ?? ""), trusted: socket.authorized });
      socket.end();
    });
    socket.on("error", reject);
  });
}

const openssl = (args: string[], cwd: string): void => {
  const p = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
};

/** A self-signed certificate for `names` in `dir` as `<base>.crt` and `<base>.key`. */
function selfSigned(dir: string, base: string, names: string[]): void {
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${base}.key`, "-out", `${base}.crt`, "-days", "2", "-subj", `/CN=${names[0]}`, "-addext", `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`], dir);
}

describe("--tls-cert and --tls-key", () => {
  test("serve the given certificate, redirect HTTP to HTTPS, and pick up a replaced certificate", async () => {
    const dir = tempDir();
    selfSigned(dir, "first", ["catty.localhost"]);
    selfSigned(dir, "second", ["catty.localhost"]);
    const [httpsPort, httpPort] = [freePort(), freePort()];
    const server = startServer([
      "--data-dir", join(dir, "data"), "--host", "127.0.0.1", "--https-port", String(httpsPort), "--http-port", String(httpPort),
      "--tls-cert", join(dir, "first.crt"), "--tls-key", join(dir, "first.key"),
    ]);
    const first = await Bun.file(join(dir, "first.crt")).text();
    const res = await waitFor(() => fetch(`https://catty.localhost:${httpsPort}/healthz`, { tls: { ca: first } }), { timeoutMs: 20_000, what: "HTTPS" });
    expect(res.status).toBe(200);
    expect(res.headers.get("strict-transport-security")).toContain("max-age=");
    expect((await peer(httpsPort, "catty.localhost", first)).trusted).toBe(true);
    expect(server.out()).toContain(`TLS HTTPS on 127.0.0.1:${httpsPort} with the certificate in ${join(dir, "first.crt")}`);

    const redirect = await fetch(`http://catty.localhost:${httpPort}/dashboard?x=1`, { redirect: "manual" });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get("location")).toBe(`https://catty.localhost:${httpsPort}/dashboard?x=1`);

    // Replaced as certbot does it: new files renamed over the old ones.
    const before = await peer(httpsPort, "catty.localhost");
    renameSync(join(dir, "second.key"), join(dir, "first.key"));
    renameSync(join(dir, "second.crt"), join(dir, "first.crt"));
    const after = await waitFor(async () => {
      const now = await peer(httpsPort, "catty.localhost");
      return now.serial !== before.serial && now;
    }, { timeoutMs: 10_000, what: "the replaced certificate" });
    const second = await Bun.file(join(dir, "first.crt")).text();
    expect((await peer(httpsPort, "catty.localhost", second)).trusted).toBe(true);
    expect(after.cn).toBe("catty.localhost");
    expect(server.out()).toContain("TLS certificate reloaded");
    await server.stop();
  });

  test("a wildcard certificate serves the preview names", async () => {
    const dir = tempDir();
    selfSigned(dir, "wild", ["*.preview.localhost", "preview.localhost"]);
    const [httpsPort, httpPort] = [freePort(), freePort()];
    startServer(["--data-dir", join(dir, "data"), "--host", "127.0.0.1", "--https-port", String(httpsPort), "--http-port", String(httpPort), "--tls-cert", join(dir, "wild.crt"), "--tls-key", join(dir, "wild.key")]);
    const wild = await Bun.file(join(dir, "wild.crt")).text();
    await waitFor(() => peer(httpsPort, "brave-tiger-1234-3000.preview.localhost"), { timeoutMs: 20_000, what: "HTTPS" });
    expect((await peer(httpsPort, "brave-tiger-1234-3000.preview.localhost", wild)).trusted).toBe(true);
  });

  test("an HTTP port in use stops the server at start with one line saying what to do, exit code 1", async () => {
    const dir = tempDir();
    selfSigned(dir, "only", ["catty.localhost"]);
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const p = Bun.spawnSync([process.execPath, SERVER, "--port", "0", "--data-dir", join(dir, "data"), "--https-port", String(freePort()), "--http-port", String(taken.port), "--host", "127.0.0.1", "--tls-cert", join(dir, "only.crt"), "--tls-key", join(dir, "only.key")], { stdout: "pipe", stderr: "pipe" });
      expect(p.exitCode).toBe(1);
      expect(p.stderr.toString()).toContain(`catty-server: cannot listen on port ${taken.port}`);
      expect(p.stderr.toString()).toContain("set --http-port to another port");
    } finally {
      taken.stop(true);
    }
  });

  test("a missing key file stops the server at start with one line naming it, exit code 1", async () => {
    const dir = tempDir();
    selfSigned(dir, "only", ["catty.localhost"]);
    const p = Bun.spawnSync([process.execPath, SERVER, "--port", "0", "--data-dir", join(dir, "data"), "--https-port", String(freePort()), "--http-port", String(freePort()), "--host", "127.0.0.1", "--tls-cert", join(dir, "only.crt"), "--tls-key", join(dir, "missing.key")], { stdout: "pipe", stderr: "pipe" });
    expect(p.exitCode).toBe(1);
    expect(p.stderr.toString()).toContain(`catty-server: cannot read the TLS key (--tls-key) ${join(dir, "missing.key")}`);
  });
});

describe.skipIf(!havePebble())("--domain, against pebble", () => {
  let pebble: Pebble;
  const dir = tempDir();
  const dataDir = join(dir, "data");
  const httpsPort = freePort();
  const domainArgs = (): string[] => ["--data-dir", dataDir, "--host", "127.0.0.1", "--domain", "catty.localhost", "--https-port", String(httpsPort), "--http-port", String(pebble.httpPort)];
  const acmeEnv = (more: Record<string, string> = {}): Record<string, string> => ({ CATTY_ACME_DIRECTORY: pebble.directory, NODE_EXTRA_CA_CERTS: pebble.caFile, ...more });
  let root = "";
  let firstSerial = "";

  test("obtains a certificate, serves HTTPS with it to the CLI and Chromium, redirects HTTP", async () => {
    pebble = await startPebble();
    running.push(() => pebble[Symbol.asyncDispose]());
    root = await pebble.root();
    const server = startServer(domainArgs(), acmeEnv());
    await waitFor(() => server.out().includes("TLS: obtained a certificate for catty.localhost"), { timeoutMs: 30_000, what: `the certificate (log: ${server.out()})` });
    const res = await waitFor(() => fetch(`https://catty.localhost:${httpsPort}/healthz`, { tls: { ca: root } }), { timeoutMs: 10_000, what: "HTTPS" });
    expect(res.status).toBe(200);
    expect(res.headers.get("strict-transport-security")).toContain("max-age=");
    const served = await peer(httpsPort, "catty.localhost", root);
    expect(served.trusted).toBe(true);
    firstSerial = served.serial;
    expect(server.out()).toContain("public URL https://catty.localhost:");

    // Kept in the data dir, for this user only.
    const tlsDir = join(dataDir, "tls");
    expect(statSync(tlsDir).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(tlsDir)) expect(statSync(join(tlsDir, f)).mode & 0o777).toBe(0o600);

    const redirect = await fetch(`http://catty.localhost:${pebble.httpPort}/x`, { redirect: "manual" });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get("location")).toBe(`https://catty.localhost:${httpsPort}/x`);

    // The CLI, trusting pebble's root as a system CA would be trusted.
    const rootFile = join(dir, "root.pem");
    await Bun.write(rootFile, root);
    const token = readFileSync(join(dataDir, "owner-token"), "utf8").trim();
    const login = Bun.spawn([process.execPath, CLI, "login", "--api", `https://catty.localhost:${httpsPort}`, "--token", token], {
      env: { ...process.env, CATTY_HOME: join(dir, "cli"), CATTY_NO_UPDATE_CHECK: "1", NODE_EXTRA_CA_CERTS: rootFile },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [loginErr, loginCode] = await Promise.all([new Response(login.stderr).text(), login.exited]);
    expect(loginErr).toContain("Logged in");
    expect(loginCode).toBe(0);

    // Chromium, trusting the issuing CA's key: the dashboard is a secure context.
    const chain = (JSON.parse(readFileSync(join(tlsDir, "certificate-catty.localhost.json"), "utf8")) as { cert: string }).cert;
    const issuer = new X509Certificate(chain.slice(chain.indexOf("-----END CERTIFICATE-----") + 26));
    const spki = createHash("sha256").update(issuer.publicKey.export({ type: "spki", format: "der" })).digest("base64");
    const browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${spki}`]);
    try {
      const page = await browser.newPage();
      const answer = await page.goto(`https://catty.localhost:${httpsPort}/`);
      expect(answer?.ok()).toBe(true);
      expect(await page.evaluate(() => (globalThis as { isSecureContext?: boolean }).isSecureContext)).toBe(true);
      // So the dashboard's service worker (its push notifications, the installable app) installs.
      const active = await page.evaluate(async () => {
        const sw = (globalThis as unknown as { navigator: { serviceWorker: { register(url: string, o: object): Promise<unknown>; ready: Promise<{ active: { scriptURL: string } | null }> } } }).navigator.serviceWorker;
        await sw.register("/sw.js", { scope: "/" });
        return (await sw.ready).active?.scriptURL ?? null;
      });
      expect(active).toBe(`https://catty.localhost:${httpsPort}/sw.js`);
    } finally {
      await browser.close();
    }
    await server.stop();
  }, 90_000);

  test("renews when the certificate is near expiry (CATTY_ACME_RENEW_DAYS), swapping it in while serving", async () => {
    const server = startServer(domainArgs(), acmeEnv({ CATTY_ACME_RENEW_DAYS: "100000" }));
    await waitFor(() => server.out().includes("TLS: obtained a certificate for catty.localhost"), { timeoutMs: 30_000, what: `the renewal (log: ${server.out()})` });
    expect(server.out()).toContain("renewing a certificate for catty.localhost");
    const renewed = await waitFor(async () => {
      const now = await peer(httpsPort, "catty.localhost", root);
      return now.serial !== firstSerial && now;
    }, { timeoutMs: 10_000, what: "the renewed certificate" });
    expect(renewed.trusted).toBe(true);
    firstSerial = renewed.serial;
    await server.stop();
  }, 60_000);

  test("with a wildcard --tls-cert beside it: the preview names get the wildcard, the domain its ACME certificate (SNI)", async () => {
    selfSigned(dir, "wild", ["*.preview.localhost"]);
    const server = startServer([...domainArgs(), "--tls-cert", join(dir, "wild.crt"), "--tls-key", join(dir, "wild.key")], acmeEnv());
    await waitFor(() => server.out().includes("TLS: serving the certificate for catty.localhost"), { timeoutMs: 30_000, what: `the stored certificate (log: ${server.out()})` });
    const wild = await Bun.file(join(dir, "wild.crt")).text();
    const preview = await waitFor(() => peer(httpsPort, "brave-tiger-1234-3000.preview.localhost", wild), { timeoutMs: 10_000, what: "HTTPS" });
    expect(preview.trusted).toBe(true);
    const main = await peer(httpsPort, "catty.localhost", root);
    expect(main.trusted).toBe(true);
    expect(main.serial).toBe(firstSerial);
    await server.stop();
  }, 60_000);

  test("keeps serving the current certificate while the certificate authority is down", async () => {
    await pebble.stop();
    const server = startServer(domainArgs(), acmeEnv({ CATTY_ACME_RENEW_DAYS: "100000" }));
    await waitFor(() => server.out().includes("TLS: could not renew the certificate for catty.localhost"), { timeoutMs: 30_000, what: `the failed renewal (log: ${server.out()})` });
    expect(server.out()).toContain("still serving the current certificate");
    expect(server.out()).toContain("trying again in 1 min");
    const served = await peer(httpsPort, "catty.localhost", root);
    expect(served.serial).toBe(firstSerial);
    expect(served.trusted).toBe(true);
    expect((await fetch(`https://catty.localhost:${httpsPort}/healthz`, { tls: { ca: root } })).status).toBe(200);
    await server.stop();
    await pebble.start();
  }, 60_000);
});

describe.skipIf(!havePebble() || !postgresBin())("--domain, two replicas on PostgreSQL", () => {
  test("order one certificate between them, and both serve it", async () => {
    await using pebble = await startPebble();
    await using s3 = await startS3rver({ bucket: "catty-tls" });
    const root = await pebble.root();
    const env = {
      CATTY_DATABASE_URL: await freshDatabase(),
      CATTY_MASTER_KEY: "7c".repeat(32),
      CATTY_INTERNAL_KEY: "c7".repeat(32),
      CATTY_ACME_DIRECTORY: pebble.directory,
      NODE_EXTRA_CA_CERTS: pebble.caFile,
      ...s3.serverEnv(),
    };
    const dir = tempDir();
    // Only the first answers on the port pebble validates on (the challenges of an order the other
    // makes are answered there from the database); the second starts while the first orders.
    const ports = [{ https: freePort(), http: pebble.httpPort }, { https: freePort(), http: freePort() }];
    const start = (i: number): Proc => {
      const p = ports[i] as { https: number; http: number };
      return startServer(["--data-dir", join(dir, `data-${i}`), "--host", "127.0.0.1", "--domain", "catty.localhost", "--https-port", String(p.https), "--http-port", String(p.http)], env);
    };
    const first = start(0);
    await waitFor(() => first.out().includes("TLS: obtaining a certificate"), { timeoutMs: 30_000, what: "the first replica's order" });
    const servers = [first, start(1)];
    const served = await Promise.all(
      ports.map((p) => waitFor(() => peer(p.https, "catty.localhost", root).then((c) => c.trusted && c), { timeoutMs: 60_000, what: `HTTPS on ${p.https}` })),
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the replicas' logs:\n${servers.map((s) => s.out()).join("\n---\n")}`);
    });
    expect(served[0]?.serial).toBe(served[1]?.serial as string);
    const orders = servers.map((s) => s.out().split("TLS: obtained a certificate").length - 1);
    expect(orders.reduce((a, b) => a + b, 0)).toBe(1);
    await Promise.all(servers.map((s) => s.stop()));
  }, 120_000);
});
