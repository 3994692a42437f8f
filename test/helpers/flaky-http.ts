/**
 * An HTTP proxy on loopback in front of a stand-in service (s3rver), for fault tests: it answers
 * some requests itself with a 500 and S3's error body instead of forwarding them, as a storage
 * having a bad moment does. `failEvery(n)`: every n-th request fails (0: none, 1: all). Counts what
 * it forwarded and what it failed.
 */
export interface FlakyHttp extends AsyncDisposable {
  url: string;
  failEvery(n: number): void;
  readonly forwarded: number;
  readonly failed: number;
  stop(): void;
}

export function flakyHttp(upstream: string): FlakyHttp {
  let every = 0;
  let count = 0;
  let forwarded = 0;
  let failed = 0;
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const url = new URL(req.url);
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer();
      if (every > 0 && ++count % every === 0) {
        failed++;
        const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`;
        return new Response(xml, { status: 500, headers: { "Content-Type": "application/xml" } });
      }
      forwarded++;
      const headers = new Headers(req.headers);
      headers.delete("host");
      const res = await fetch(upstream + url.pathname + url.search, { method: req.method, headers, body, decompress: false });
      return new Response(res.body, { status: res.status, headers: res.headers });
    },
  });
  const stop = (): void => void server.stop(true);
  return {
    url: `http://127.0.0.1:${server.port}`,
    failEvery: (n) => {
      every = n;
      count = 0;
    },
    get forwarded() {
      return forwarded;
    },
    get failed() {
      return failed;
    },
    stop,
    [Symbol.asyncDispose]: async () => stop(),
  };
}
