/**
 * What makes the dashboard an installable app that can be told of requests while closed: its web
 * app manifest, its icon (SVG), and its service worker, which shows each push (server/push.ts's
 * payload) as a notification with Allow and Deny, posts the one-use answer link of the button
 * pressed (no cookie needed: the link is the credential), and opens the session on a tap.
 */

export const MANIFEST = JSON.stringify({
  name: "Catty",
  short_name: "Catty",
  description: "Your persistent terminal sessions, and what they ask",
  start_url: "/",
  scope: "/",
  display: "standalone",
  background_color: "#0d1117",
  theme_color: "#0d1117",
  icons: [{ src: "/icon.svg", sizes: "any", type: "image/svg+xml", purpose: "any maskable" }],
});

export const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512"><rect width="512" height="512" rx="96" fill="#0d1117"/><path d="M120 400V170l70 60h132l70-60v230z" fill="#e6edf3"/><circle cx="205" cy="300" r="22" fill="#0d1117"/><circle cx="307" cy="300" r="22" fill="#0d1117"/><path d="M150 420h60" stroke="#3fb950" stroke-width="22" stroke-linecap="round"/></svg>`;

/** The service worker (plain script: it runs alone, without the dashboard's bundle). */
export const SERVICE_WORKER = `// Catty's service worker: push notifications for the approval inbox.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("push", (e) => {
  let p = null;
  try { p = e.data ? e.data.json() : null; } catch (err) { p = null; }
  if (!p || typeof p.title !== "string") return;
  const actions = p.actions ? [{ action: "allow", title: "Allow" }, { action: "deny", title: "Deny" }] : [];
  e.waitUntil(self.registration.showNotification(p.title, {
    body: String(p.body || ""),
    tag: p.request && p.request.id ? "catty-" + p.request.id : undefined,
    icon: "/icon.svg",
    requireInteraction: true,
    actions,
    data: { url: p.url || "/", actions: p.actions || null },
  }));
});
self.addEventListener("notificationclick", (e) => {
  const n = e.notification;
  const data = n.data || {};
  n.close();
  if ((e.action === "allow" || e.action === "deny") && data.actions && typeof data.actions[e.action] === "string" && data.actions[e.action].startsWith("/v1/act/")) {
    e.waitUntil(fetch(data.actions[e.action], { method: "POST", credentials: "omit" }).then((r) => {
      if (!r.ok) return self.registration.showNotification(r.status === 404 ? "Already answered" : "The answer did not go through", { body: n.body, tag: n.tag });
    }));
    return;
  }
  const url = typeof data.url === "string" && data.url.startsWith("/") ? data.url : "/";
  e.waitUntil(self.clients.openWindow(url));
});
`;
