/**
 * HTTPS served by the server itself: the app over TLS on the HTTPS port with the certificates it
 * has (the `--domain` one obtained over ACME first, the operator's `--tls-cert` beside it, picked
 * by SNI), and the HTTP port answering ACME HTTP-01 challenges and redirecting everything else to
 * HTTPS. A certificate that changes (renewed, or the operator's files replaced) is swapped in
 * without dropping a connection. HSTS comes from the app, which sees the HTTPS public URL.
 */
import type { Server, WebSocketHandler } from "bun";
import type { Log } from "../../src/lib/log.ts";
import { SettingsError } from "../../src/protocol/settings.ts";
import type { TlsConfig } from "../config.ts";
import { startAcmeManager, type AcmeManager } from "./acme-manager.ts";
import type { Certificate } from "./certs.ts";
import { watchCertificateFiles, type CertificateFiles } from "./files.ts";
import { listenHttps, type HttpsListener } from "./listener.ts";
import type { TlsStorage } from "./storage.ts";

export interface TlsServing {
  /** The HTTPS port (null until a first certificate is there), and the HTTP port. */
  httpsPort(): number | null;
  readonly httpPort: number;
  /** For the start line: what is served, how. */
  readonly summary: string;
  stop(closeActive?: boolean): Promise<void>;
}

export interface TlsServeOptions<T> {
  tls: TlsConfig;
  storage: TlsStorage;
  fetch(req: Request, server: Server<T>): Response | Promise<Response | undefined> | undefined;
  websocket: WebSocketHandler<T>;
  maxRequestBodySize: number;
  log: Log;
  /** Replicas: one orders at a time (see AcmeManagerOptions.exclusive). */
  exclusive?(order: () => Promise<void>): Promise<boolean>;
}

const CHALLENGE = "/.well-known/acme-challenge/";

/** Binds a listener; a port that cannot be bound is a one-line error saying what to do. */
function bind<L>(flag: string, port: number, listen: () => L): L {
  try {
    return listen();
  } catch (err) {
    const privileged = port > 0 && port < 1024 ? " Ports below 1024 need root or CAP_NET_BIND_SERVICE (`setcap cap_net_bind_service=+ep $(which catty-server)`)," : "";
    throw new SettingsError(`cannot listen on port ${port} (${(err as Error).message}).${privileged} or set ${flag} to another port.`);
  }
}

export async function serveTls<T>(opts: TlsServeOptions<T>): Promise<TlsServing> {
  const { tls, log } = opts;
  let acmeCert: Certificate | null = null;
  let fileCert: Certificate | null = null;
  let https: HttpsListener | null = null;
  // Certificates change one at a time, in order.
  let applying = Promise.resolve();
  const apply = (): Promise<void> =>
    (applying = applying.then(async () => {
      const certs = [acmeCert, fileCert].filter((c): c is Certificate => c !== null);
      if (certs.length === 0) return;
      if (https) return https.swap(certs);
      https = bind("--https-port", tls.httpsPort, () =>
        listenHttps({ host: tls.host, port: tls.httpsPort, certs, fetch: opts.fetch, websocket: opts.websocket, maxRequestBodySize: opts.maxRequestBodySize }),
      );
      log.info(`HTTPS on ${tls.host}:${https.port} for ${certs.flatMap((c) => c.names).join(", ")}`);
    }));

  const http = bind("--http-port", tls.httpPort, () => Bun.serve({
    hostname: tls.host,
    port: tls.httpPort,
    async fetch(req) {
      const url = new URL(req.url);
      const token = url.pathname.startsWith(CHALLENGE) ? url.pathname.slice(CHALLENGE.length) : null;
      if (token !== null) {
        const answer = /^[A-Za-z0-9_-]{1,128}$/.test(token) ? await opts.storage.challenge(token) : null;
        return answer ? new Response(answer, { headers: { "content-type": "text/plain" } }) : new Response("not found", { status: 404 });
      }
      const port = https?.port ?? tls.httpsPort;
      return Response.redirect(`https://${url.hostname}${port === 443 ? "" : `:${port}`}${url.pathname}${url.search}`, 308);
    },
  }));

  let files: CertificateFiles | null = null;
  let acme: AcmeManager | null = null;
  try {
    if (tls.files) {
      files = watchCertificateFiles(tls.files.cert, tls.files.key, async (cert) => {
        fileCert = cert;
        await apply();
      }, log);
      fileCert = files.current;
      await apply();
    }
    if (tls.domain) {
      acme = await startAcmeManager({
        domain: tls.domain,
        directory: tls.acme.directory,
        email: tls.acme.email,
        renewDays: tls.acme.renewDays,
        storage: opts.storage,
        log,
        ...(opts.exclusive ? { exclusive: opts.exclusive } : {}),
        onCertificate: async (cert) => {
          acmeCert = cert;
          await apply();
        },
      });
    }
  } catch (err) {
    files?.close();
    await http.stop(true);
    throw err;
  }
  const served = [tls.domain ? `a certificate for ${tls.domain} over ACME (${new URL(tls.acme.directory).host})` : null, tls.files ? `the certificate in ${tls.files.cert}` : null].filter(Boolean).join(" and ");
  return {
    httpsPort: () => (https as HttpsListener | null)?.port ?? null,
    httpPort: http.port as number,
    summary: `HTTPS on ${tls.host}:${tls.httpsPort} with ${served}, HTTP on :${http.port as number} redirects to it`,
    async stop(closeActive = false) {
      acme?.close();
      files?.close();
      await applying;
      await Promise.all([(https as HttpsListener | null)?.stop(closeActive), http.stop(closeActive)]);
    },
  };
}
