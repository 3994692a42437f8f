/**
 * What the API stand-ins (Fly, Kubernetes) share: a loopback HTTP server that records every
 * request (method, path, query, Authorization header, JSON body) before the stand-in answers it,
 * and refuses a body that is not JSON with the stand-in's own error shape.
 */
export interface RecordedApiRequest {
  method: string;
  path: string;
  search: string;
  auth: string | null;
  body: unknown;
}

export function serveRecorded(
  requests: RecordedApiRequest[],
  answer: (req: Request, url: URL, body: unknown) => Response | Promise<Response>,
  badJson: () => Response,
): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const text = await req.text();
      let body: unknown = undefined;
      if (text) {
        try {
          body = JSON.parse(text);
        } catch {
          return badJson();
        }
      }
      requests.push({ method: req.method, path: url.pathname, search: url.search, auth: req.headers.get("authorization"), body });
      return answer(req, url, body);
    },
  });
}
