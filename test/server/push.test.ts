/**
 * Web Push's pieces against the RFCs' own round trips: the VAPID keys made once and kept sealed
 * (one key pair for every replica, the private key never in clear in the database), the payload
 * a device decrypts (RFC 8291), the JWT a push service checks (RFC 8292).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createECDH, createPublicKey, randomBytes, verify } from "node:crypto";
import { encryptPayload, vapidAuthorization, vapidKeys, vapidSubject } from "../../server/push.ts";
import { openSqliteStore } from "../../server/store/sqlite.ts";
import { decryptPush } from "../helpers/push-service.ts";

const store = openSqliteStore(":memory:");
afterAll(() => store.close());

describe("web push", () => {
  test("the VAPID keys: made once under a lease, the same for every replica, the private key sealed with the master key", async () => {
    const master = randomBytes(32);
    const [a, b] = await Promise.all([vapidKeys(store, "replica-a", master), vapidKeys(store, "replica-b", master)]);
    expect(b).toEqual(a);
    expect(Buffer.from(a.publicKey, "base64url")).toHaveLength(65);
    const stored = (await store.serverState("vapid-keys")) as string;
    expect(stored).not.toContain(a.privateKey);
    expect(stored).toContain(a.publicKey);
    await expect(vapidKeys(store, "replica-c", randomBytes(32))).rejects.toThrow();
  });

  test("a payload the device decrypts, and a JWT for the push service's origin signed by the public key", async () => {
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const auth = randomBytes(16);
    const sub = { endpoint: "https://push.example/x", keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: auth.toString("base64url") } };
    const body = encryptPayload(Buffer.from('{"title":"t"}'), sub);
    expect(body.readUInt32BE(16)).toBe(4096);
    expect(decryptPush(body, { ecdh, auth })).toBe('{"title":"t"}');
    const pair = createECDH("prime256v1");
    pair.generateKeys();
    const vk = { publicKey: pair.getPublicKey().toString("base64url"), privateKey: pair.getPrivateKey().toString("base64url") };
    const header = vapidAuthorization(vk, "https://push.example", vapidSubject("http://127.0.0.1:8080"), 1_000);
    const [, h, c, s, k] = /^vapid t=([\w-]+)\.([\w-]+)\.([\w-]+), k=([\w-]+)$/.exec(header) as unknown as string[];
    expect(k).toBe(vk.publicKey);
    expect(JSON.parse(Buffer.from(c as string, "base64url").toString())).toEqual({ aud: "https://push.example", exp: 1_000 + 12 * 3600, sub: "mailto:catty@127.0.0.1" });
    const pub = Buffer.from(k as string, "base64url");
    const key = createPublicKey({ key: { kty: "EC", crv: "P-256", x: pub.subarray(1, 33).toString("base64url"), y: pub.subarray(33).toString("base64url") }, format: "jwk" });
    expect(verify("sha256", Buffer.from(`${h}.${c}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(s as string, "base64url"))).toBe(true);
  });
});
