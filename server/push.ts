/**
 * Web Push for the inbox: each new request is pushed to the user's subscribed devices (RFC 8030),
 * the server identifying itself with its VAPID key (RFC 8292: an ES256 JWT for the push service's
 * origin), the payload encrypted for the device (RFC 8291, `aes128gcm` of RFC 8188), so the push
 * service never reads the command. The payload carries the request and its one-use action tokens
 * (`POST /v1/act/<token>`) for the notification's Allow and Deny buttons.
 *
 * The VAPID key pair is made on the first start and kept in the database's server state (the
 * private key sealed with a key derived from the master key), so every replica pushes with the
 * same key; made under a lease, so two replicas starting together agree.
 * Subscriptions are kept per user in the server state too (`push:<user id>`); one the push service
 * answers 404 or 410 is dropped. Deliveries never block a session; failures are logged without
 * the request's content.
 */
import { createCipheriv, createDecipheriv, createECDH, createHmac, createPrivateKey, hkdfSync, randomBytes, sign } from "node:crypto";
import { z } from "zod";
import type { Log } from "../src/lib/log.ts";
import { CattyError, type PendingRequest, type SettledHow } from "../src/protocol/index.ts";
import type { ActionTokens, InboxEvents } from "./inbox.ts";
import { askBody, askTitle } from "./notify.ts";
import type { Store } from "./store/types.ts";

const b64u = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
const unb64u = (s: string): Buffer => Buffer.from(s, "base64url");

/** A browser's push subscription (`PushSubscription.toJSON()`), checked. */
export const PushSubscriptionJson = z.object({
  endpoint: z.url({ protocol: /^https?$/ }).max(2048),
  keys: z.object({
    p256dh: z.string().regex(/^[A-Za-z0-9_-]{86,88}$/, "must be a P-256 public key (base64url)"),
    auth: z.string().regex(/^[A-Za-z0-9_-]{22,24}$/, "must be a 16-byte secret (base64url)"),
  }),
});
export type PushSubscriptionJson = z.infer<typeof PushSubscriptionJson>;

const Stored = z.array(PushSubscriptionJson.extend({ id: z.string(), createdAt: z.string() })).max(50);
export type StoredSubscription = z.infer<typeof Stored>[number];

/** The most devices one user may subscribe. */
const MAX_SUBSCRIPTIONS = 20;

export interface VapidKeys {
  /** Uncompressed P-256 point, base64url (the browser's `applicationServerKey`). */
  publicKey: string;
  /** The private scalar, base64url. */
  privateKey: string;
}

/** The private key as kept in the database: AES-256-GCM under a key derived from the master key (bound to its name). */
function vapidSealer(masterKey: Buffer): { seal(keys: VapidKeys): string; open(text: string): VapidKeys } {
  const key = Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), "catty vapid keys v1", 32));
  const Sealed = z.object({ publicKey: z.string(), iv: z.string(), tag: z.string(), privateKey: z.string() });
  return {
    seal: (keys) => {
      const iv = randomBytes(12);
      const c = createCipheriv("aes-256-gcm", key, iv).setAAD(Buffer.from(keys.publicKey));
      const privateKey = Buffer.concat([c.update(keys.privateKey, "utf8"), c.final()]);
      return JSON.stringify({ publicKey: keys.publicKey, iv: b64u(iv), tag: b64u(c.getAuthTag()), privateKey: b64u(privateKey) });
    },
    open: (text) => {
      const s = Sealed.parse(JSON.parse(text));
      const d = createDecipheriv("aes-256-gcm", key, unb64u(s.iv)).setAAD(Buffer.from(s.publicKey));
      d.setAuthTag(unb64u(s.tag));
      return { publicKey: s.publicKey, privateKey: Buffer.concat([d.update(unb64u(s.privateKey)), d.final()]).toString("utf8") };
    },
  };
}

/** The server's VAPID keys: read from the server state, else made once (under a lease) and kept there, the private key sealed. */
export async function vapidKeys(store: Store, holder: string, masterKey: Buffer): Promise<VapidKeys> {
  const sealer = vapidSealer(masterKey);
  const read = async (): Promise<VapidKeys | null> => {
    const raw = await store.serverState("vapid-keys");
    return raw ? sealer.open(raw) : null;
  };
  for (let tries = 0; tries < 50; tries++) {
    const have = await read();
    if (have) return have;
    const now = Date.now();
    if (await store.takeLease("vapid-keys", holder, new Date(now + 30_000).toISOString(), new Date(now).toISOString())) {
      try {
        const again = await read();
        if (again) return again;
        const ecdh = createECDH("prime256v1");
        ecdh.generateKeys();
        const keys = { publicKey: b64u(ecdh.getPublicKey()), privateKey: b64u(ecdh.getPrivateKey()) };
        await store.setServerState("vapid-keys", sealer.seal(keys), new Date().toISOString());
        return keys;
      } finally {
        await store.releaseLease("vapid-keys", holder);
      }
    }
    await Bun.sleep(100);
  }
  throw new Error("could not read or make the VAPID keys (another replica holds their lease)");
}

/** The VAPID `Authorization` header for a push service's origin (RFC 8292): an ES256 JWT valid 12 hours. */
export function vapidAuthorization(keys: VapidKeys, audience: string, subject: string, nowSec = Math.floor(Date.now() / 1000)): string {
  const pub = unb64u(keys.publicKey);
  const jwk = { kty: "EC", crv: "P-256", x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33, 65)), d: keys.privateKey };
  const key = createPrivateKey({ key: jwk, format: "jwk" });
  const header = b64u(Buffer.from(JSON.stringify({ typ: "JWT", alg: "ES256" })));
  const claims = b64u(Buffer.from(JSON.stringify({ aud: audience, exp: nowSec + 12 * 3600, sub: subject })));
  const signature = sign("sha256", Buffer.from(`${header}.${claims}`), { key, dsaEncoding: "ieee-p1363" });
  return `vapid t=${header}.${claims}.${b64u(signature)}, k=${keys.publicKey}`;
}

/** The JWT's subject: the server's https URL, else a mailto: of its host (RFC 8292 asks for one of the two). */
export const vapidSubject = (publicUrl: string): string => (publicUrl.startsWith("https://") ? publicUrl : `mailto:catty@${new URL(publicUrl).hostname}`);

const hmac = (key: Uint8Array, data: Uint8Array): Buffer => createHmac("sha256", key).update(data).digest();

/** Encrypts `plaintext` for a subscription (RFC 8291 with RFC 8188's aes128gcm, one record). */
export function encryptPayload(plaintext: Uint8Array, sub: PushSubscriptionJson): Buffer {
  const uaPublic = unb64u(sub.keys.p256dh);
  const authSecret = unb64u(sub.keys.auth);
  const ecdh = createECDH("prime256v1");
  const asPublic = ecdh.generateKeys();
  const shared = ecdh.computeSecret(uaPublic);
  // HKDF(auth_secret, ecdh_secret, "WebPush: info" || 0x00 || ua_public || as_public, 32)
  const prkKey = hmac(authSecret, shared);
  const ikm = hmac(prkKey, Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic, Buffer.from([1])]));
  const salt = randomBytes(16);
  const prk = hmac(salt, ikm);
  const cek = hmac(prk, Buffer.from("Content-Encoding: aes128gcm\0\x01")).subarray(0, 16);
  const nonce = hmac(prk, Buffer.from("Content-Encoding: nonce\0\x01")).subarray(0, 12);
  const cipher = createCipheriv("aes-128-gcm", cek, nonce);
  // One record: the payload, then the last record's delimiter (2).
  const body = Buffer.concat([cipher.update(Buffer.concat([plaintext, Buffer.from([2])])), cipher.final(), cipher.getAuthTag()]);
  const rs = Buffer.alloc(4);
  rs.writeUInt32BE(4096);
  return Buffer.concat([salt, rs, Buffer.from([asPublic.length]), asPublic, body]);
}

export interface PushOptions {
  store: Store;
  /** This replica's id (the VAPID key's lease). */
  holder: string;
  /** Seals the VAPID private key in the database. */
  masterKey: Buffer;
  /** The server's public URL: the notification opens the session there; the JWT's subject. */
  publicUrl(): string;
  log: Log;
  fetch?: typeof fetch;
}

/** What the service worker gets (server/web/sw.ts shows it). */
export interface PushPayload {
  title: string;
  body: string;
  url: string;
  request: Pick<PendingRequest, "id" | "label" | "tool">;
  /** Paths that answer with the one-use tokens (POST). */
  actions: { allow: string; deny: string };
}

export class WebPush implements InboxEvents {
  private keys: Promise<VapidKeys> | null = null;
  private readonly fetch: typeof fetch;

  constructor(private readonly opts: PushOptions) {
    this.fetch = opts.fetch ?? fetch;
  }

  publicKey(): Promise<string> {
    return this.vapid().then((k) => k.publicKey);
  }

  private vapid(): Promise<VapidKeys> {
    this.keys ??= vapidKeys(this.opts.store, this.opts.holder, this.opts.masterKey).catch((err: unknown) => {
      this.keys = null;
      throw err;
    });
    return this.keys;
  }

  async list(userId: string): Promise<StoredSubscription[]> {
    const raw = await this.opts.store.serverState(`push:${userId}`);
    if (!raw) return [];
    const parsed = Stored.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : [];
  }

  private async save(userId: string, subs: StoredSubscription[]): Promise<void> {
    await this.opts.store.setServerState(`push:${userId}`, subs.length > 0 ? JSON.stringify(subs) : null, new Date().toISOString());
  }

  /** Adds (or renews) a device's subscription; its id. */
  async subscribe(userId: string, sub: PushSubscriptionJson): Promise<StoredSubscription> {
    const subs = (await this.list(userId)).filter((s) => s.endpoint !== sub.endpoint);
    if (subs.length >= MAX_SUBSCRIPTIONS) throw new CattyError("conflict", `You have ${MAX_SUBSCRIPTIONS} devices subscribed.`, "Remove one in the dashboard first.");
    const row = { ...sub, id: randomBytes(6).toString("hex"), createdAt: new Date().toISOString() };
    await this.save(userId, [...subs, row]);
    return row;
  }

  async unsubscribe(userId: string, id: string): Promise<boolean> {
    const subs = await this.list(userId);
    const left = subs.filter((s) => s.id !== id);
    if (left.length === subs.length) return false;
    await this.save(userId, left);
    return true;
  }

  asked(r: PendingRequest, userId: string, actions: ActionTokens): void {
    const payload: PushPayload = {
      title: askTitle(r),
      body: askBody(r),
      url: `/s/${encodeURIComponent(r.label)}`,
      request: { id: r.id, label: r.label, tool: r.tool },
      actions: { allow: `/v1/act/${actions.allow}`, deny: `/v1/act/${actions.deny}` },
    };
    void this.pushAll(userId, payload);
  }

  settled(_r: PendingRequest, _userId: string, _how: SettledHow): void {}

  private async pushAll(userId: string, payload: PushPayload): Promise<void> {
    try {
      const keys = await this.vapid();
      for (const sub of await this.list(userId)) {
        const status = await this.pushOne(keys, sub, payload).catch(() => 0);
        if (status === 404 || status === 410) {
          await this.unsubscribe(userId, sub.id);
          this.opts.log.info("a push subscription is gone; dropped", { push: new URL(sub.endpoint).origin, status });
        } else if (status < 200 || status >= 300) {
          this.opts.log.warn("a push could not be delivered", { push: new URL(sub.endpoint).origin, status });
        }
      }
    } catch (err) {
      this.opts.log.warn("push notifications failed", { err: (err as Error).message });
    }
  }

  private async pushOne(keys: VapidKeys, sub: StoredSubscription, payload: PushPayload): Promise<number> {
    const body = encryptPayload(Buffer.from(JSON.stringify(payload)), sub);
    const res = await this.fetch(sub.endpoint, {
      method: "POST",
      headers: {
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        TTL: "3600",
        Urgency: "high",
        Authorization: vapidAuthorization(keys, new URL(sub.endpoint).origin, vapidSubject(this.opts.publicUrl())),
      },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    await res.body?.cancel().catch(() => {});
    return res.status;
  }
}
