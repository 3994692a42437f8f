/**
 * The dashboard's pages (`/`, `/s/<label>`, `/device`) and its two assets, on the server's own
 * port. Every page is the same small HTML shell with a strict Content-Security-Policy (scripts and
 * styles from this server only, no inline script, WebSockets to this server); the assets carry their
 * content hash in their names and are cached for a year.
 */
import { Hono } from "hono";
import { webAssets } from "../web/assets.ts";
import type { WebConfig } from "../../src/protocol/index.ts";
import type { AppEnv, RouteDeps } from "./common.ts";

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

function page(hash: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<title>Catty</title>
<link rel="stylesheet" href="/assets/app-${hash}.css">
</head>
<body>
<div id="app"></div>
<script type="module" src="/assets/app-${hash}.js"></script>
</body>
</html>
`;
}

export function webRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const html = async (): Promise<Response> =>
    new Response(page((await webAssets()).hash), {
      headers: {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
      },
    });
  app.get("/", html);
  app.get("/device", html);
  app.get("/s/:label", html);
  app.get("/assets/:name", async (c) => {
    const a = await webAssets();
    const name = c.req.param("name");
    const headers = { "cache-control": "public, max-age=31536000, immutable", "x-content-type-options": "nosniff" };
    if (name === `app-${a.hash}.js`) return new Response(a.js, { headers: { ...headers, "content-type": "text/javascript; charset=utf-8" } });
    if (name === `app-${a.hash}.css`) return new Response(a.css, { headers: { ...headers, "content-type": "text/css; charset=utf-8" } });
    return c.text("not found", 404);
  });
  app.get("/v1/web/config", (c) => c.json({ regions: deps.provider.regions.map((r) => ({ id: r.id, name: r.name })) } satisfies WebConfig));
  return app;
}
