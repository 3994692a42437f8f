/**
 * The dashboard's pages (`/`, `/s/<label>`, `/device`), its two assets, and what makes it an
 * installable app (manifest, icon, service worker: server/web/pwa.ts), on the server's own
 * port. Every page is the same small HTML shell with a strict Content-Security-Policy (scripts and
 * styles from this server only, no inline script, WebSockets to this server); the assets carry their
 * content hash in their names and are cached for a year.
 */
import { Hono } from "hono";
import { webAssets } from "../web/assets.ts";
import { ICON_SVG, MANIFEST, SERVICE_WORKER } from "../web/pwa.ts";
import type { WebConfig } from "../../src/protocol/index.ts";
import type { AppEnv, RouteDeps } from "./common.ts";

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
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
<link rel="manifest" href="/manifest.webmanifest">
<link rel="icon" href="/icon.svg" type="image/svg+xml">
<meta name="theme-color" content="#0d1117">
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
  // The installable app: manifest, icon, and the service worker (at the root, so it controls every page).
  const asset = (body: string, type: string, extra: Record<string, string> = {}) => () =>
    new Response(body, { headers: { "content-type": type, "x-content-type-options": "nosniff", "cache-control": "no-cache", ...extra } });
  app.get("/manifest.webmanifest", asset(MANIFEST, "application/manifest+json"));
  app.get("/icon.svg", asset(ICON_SVG, "image/svg+xml", { "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'" }));
  app.get("/sw.js", asset(SERVICE_WORKER, "text/javascript; charset=utf-8", { "service-worker-allowed": "/" }));
  app.get("/v1/web/config", (c) => c.json({ regions: deps.provider.regions.map((r) => ({ id: r.id, name: r.name })) } satisfies WebConfig));
  return app;
}
