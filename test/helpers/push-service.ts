/**
 * A stand-in push service (RFC 8030) on loopback, with the device's side of a subscription: the
 * test makes a P-256 key pair and an auth secret (what a browser makes for `PushManager.subscribe`),
 * the server posts to `<url>/push/<id>`, and each message is recorded with its VAPID JWT checked
 * (RFC 8292: ES256 by the `k` key, `aud` this service's origin, `exp` within 24 h, a `sub`) and its
 * body decrypted (RFC 8291, aes128gcm). A subscription can be made to answer 410 (gone).
 */
import { createDecipheriv, createECDH, createHmac, createPublicKey, randomBytes, verify } from "node:crypto";

export interface PushMessage {
  id: string;
  /** When it arrived (Date.now()). */
  at: number;
  status: number;
  /** Why the VAPID header or the body was refused; null when both were good. */
  problem: string | null;
  /** The decrypted payload. */
  payload: string | null;
  vapid: { aud: string; exp: number; sub: string; k: string } | null;
}

export interface PushDevice {
  id: string;
  /** What `PushSubscription.toJSON()` gives. */
  subscription: { endpoint: string; keys: { p256dh: string; auth: string } };
  ecdh: ReturnType<typeof createECDH>;
  auth: Buffer;
}

export interface PushServiceStandIn {
  url: string;
  messages: PushMessage[];
  /** Subscriptions (by id) that answer 410 Gone. */
  gone: Set<string>;
  device(): PushDevice;
  stop(): void;
}

const b64u = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
const hmac = (key: Uint8Array, data: Uint8Array): Buffer => createHmac("sha256", key).update(data).digest();

function checkVapid(header: string | null, origin: string): { vapid: PushMessage["vapid"]; problem: string | null } {
  const m = /^vapid t=([\w-]+)\.([\w-]+)\.([\w-]+),\s*k=([\w-]+)$/.exec(header ?? "");
  if (!m) return { vapid: null, problem: `no VAPID authorization: ${header}` };
  const [, h, c, s, k] = m as unknown as [string, string, string, string, string];
  const head = JSON.parse(Buffer.from(h, "base64url").toString()) as { alg?: string };
  const claims = JSON.parse(Buffer.from(c, "base64url").toString()) as { aud: string; exp: number; sub: string };
  const pub = Buffer.from(k, "base64url");
  const key = createPublicKey({ key: { kty: "EC", crv: "P-256", x: b64u(pub.subarray(1, 33)), y: b64u(pub.subarray(33, 65)) }, format: "jwk" });
  const vapid = { ...claims, k };
  if (head.alg !== "ES256") return { vapid, problem: `alg ${head.alg}` };
  if (!verify("sha256", Buffer.from(`${h}.${c}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"))) return { vapid, problem: "bad JWT signature" };
  if (claims.aud !== origin) return { vapid, problem: `aud ${claims.aud} is not ${origin}` };
  const now = Date.now() / 1000;
  if (!(claims.exp > now && claims.exp <= now + 24 * 3600)) return { vapid, problem: `exp ${claims.exp}` };
  if (!/^(mailto:|https:)/.test(claims.sub ?? "")) return { vapid, problem: `sub ${claims.sub}` };
  return { vapid, problem: null };
}

/** RFC 8291's decryption with the device's private key and auth secret. */
export function decryptPush(body: Buffer, device: Pick<PushDevice, "ecdh" | "auth">): string {
  const salt = body.subarray(0, 16);
  const idlen = body[20] as number;
  const asPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  const uaPublic = device.ecdh.getPublicKey();
  const shared = device.ecdh.computeSecret(asPublic);
  const ikm = hmac(hmac(device.auth, shared), Buffer.concat([Buffer.from("WebPush: info\0"), uaPublic, asPublic, Buffer.from([1])]));
  const prk = hmac(salt, ikm);
  const cek = hmac(prk, Buffer.from("Content-Encoding: aes128gcm\0\x01")).subarray(0, 16);
  const nonce = hmac(prk, Buffer.from("Content-Encoding: nonce\0\x01")).subarray(0, 12);
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  const end = padded.lastIndexOf(2);
  if (end < 0 || padded.subarray(end + 1).some((b) => b !== 0)) throw new Error("no last-record delimiter");
  return padded.subarray(0, end).toString();
}

export function startPushServiceStandIn(): PushServiceStandIn {
  const devices = new Map<string, PushDevice>();
  const state: PushServiceStandIn = {
    url: "",
    messages: [],
    gone: new Set(),
    device: () => {
      const ecdh = createECDH("prime256v1");
      ecdh.generateKeys();
      const auth = randomBytes(16);
      const id = randomBytes(8).toString("hex");
      const d = { id, ecdh, auth, subscription: { endpoint: `${state.url}/push/${id}`, keys: { p256dh: b64u(ecdh.getPublicKey()), auth: b64u(auth) } } };
      devices.set(id, d);
      return d;
    },
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const id = /^\/push\/(\w+)$/.exec(new URL(req.url).pathname)?.[1] ?? "";
      const device = devices.get(id);
      const at = Date.now();
      const body = Buffer.from(await req.arrayBuffer());
      if (!device || req.method !== "POST") return new Response("no such subscription", { status: 404 });
      if (state.gone.has(id)) {
        state.messages.push({ id, at, status: 410, problem: null, payload: null, vapid: null });
        return new Response("gone", { status: 410 });
      }
      const { vapid, problem } = checkVapid(req.headers.get("authorization"), state.url);
      let payload: string | null = null;
      let why = problem ?? (req.headers.get("content-encoding") !== "aes128gcm" ? "not aes128gcm" : !req.headers.get("ttl") ? "no TTL" : null);
      try {
        payload = decryptPush(body, device);
      } catch (err) {
        why ??= `does not decrypt: ${(err as Error).message}`;
      }
      const status = why ? 400 : 201;
      state.messages.push({ id, at, status, problem: why, payload, vapid });
      return new Response(null, { status });
    },
  });
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}
