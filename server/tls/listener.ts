/**
 * The HTTPS listener: the app over TLS with one or more certificates picked by SNI (the first is
 * served to clients that send no name), and a swap to new certificates without dropping anyone.
 * Bun cannot change a listening server's certificates, so a swap binds a second server to the
 * same port (SO_REUSEPORT), then stops the first from taking connections; connections it has
 * finish there.
 */
import type { Server, WebSocketHandler } from "bun";
import type { Certificate } from "./certs.ts";

export interface HttpsListener {
  readonly port: number;
  /** Serves `certs` to new connections from now on. */
  swap(certs: readonly Certificate[]): Promise<void>;
  stop(closeActive?: boolean): Promise<void>;
}

export interface HttpsOptions<T> {
  host: string;
  port: number;
  certs: readonly Certificate[];
  fetch(req: Request, server: Server<T>): Response | Promise<Response | undefined> | undefined;
  websocket: WebSocketHandler<T>;
  maxRequestBodySize: number;
}

/** One entry per name a certificate is for; Bun serves the first to a client that sends no name it knows. */
const tlsOf = (certs: readonly Certificate[]): Array<{ cert: string; key: string; serverName?: string }> =>
  certs.flatMap((c) => (c.names.length === 0 ? [{ cert: c.cert, key: c.key }] : c.names.map((serverName) => ({ cert: c.cert, key: c.key, serverName }))));

export function listenHttps<T>(opts: HttpsOptions<T>): HttpsListener {
  const start = (port: number, certs: readonly Certificate[]): Server<T> =>
    Bun.serve<T>({
      hostname: opts.host,
      port,
      reusePort: true,
      tls: tlsOf(certs),
      fetch: opts.fetch as never,
      websocket: opts.websocket,
      maxRequestBodySize: opts.maxRequestBodySize,
    });
  let server = start(opts.port, opts.certs);
  const old: Server<T>[] = [];
  const port = server.port as number;
  return {
    port,
    async swap(certs) {
      const next = start(port, certs);
      const previous = server;
      server = next;
      old.push(previous);
      // Not awaited: its connections (WebSockets too) may live on for hours; stop() ends them.
      void previous.stop(false).then(() => {
        old.splice(old.indexOf(previous), 1);
      });
    },
    async stop(closeActive = false) {
      await Promise.all([server, ...old].map((s) => s.stop(closeActive)));
    },
  };
}
