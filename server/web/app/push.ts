/**
 * Notify me: the service worker (/sw.js) registered, this device subscribed to Web Push with the
 * server's VAPID key, and the subscription handed to the server (server/push.ts).
 */
import { api } from "./api.ts";

/** Registers the service worker (every page: it shows pushes even when none is open). */
export function registerWorker(): Promise<ServiceWorkerRegistration | null> {
  if (!("serviceWorker" in navigator)) return Promise.resolve(null);
  return navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => null);
}

const bytes = (b64u: string): Uint8Array => {
  const s = atob(b64u.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
};

/** Subscribes this device; resolves to what to say. */
export async function subscribeDevice(): Promise<string> {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return "This browser cannot receive push notifications.";
  if ((await Notification.requestPermission()) !== "granted") return "Notifications are blocked for this site.";
  const reg = await registerWorker();
  if (!reg) return "The service worker could not be registered.";
  await navigator.serviceWorker.ready;
  const { publicKey } = await api.pushKey();
  const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes(publicKey) as BufferSource });
  await api.pushSubscribe(sub.toJSON());
  return "This device will be notified.";
}
