/**
 * The `Store` contract, run against both engines: SQLite (the embedded default) and a real
 * PostgreSQL (a private cluster this test process starts, see helpers/postgres.ts). Every method,
 * with the cases the server relies on: ordering, one-use tickets and uploads, upserts, batched
 * blob lookups past the batch size, numbers past 32 bits, and what two callers racing get.
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { openPostgresStore } from "../../server/store/postgres.ts";
import { openSqliteStore } from "../../server/store/sqlite.ts";
import type { SessionRow, Store, User } from "../../server/store/types.ts";
import { freshDatabase } from "../helpers/postgres.ts";
import { sessionRow } from "../helpers/rows.ts";
import { removeAfterRun } from "../helpers/fs.ts";

interface Engine {
  name: string;
  open(): Promise<Store>;
}

const ENGINES: Engine[] = [
  { name: "sqlite", open: async () => openSqliteStore(join(removeAfterRun(mkdtempSync(join(tmpdir(), "catty-contract-"))), "catty.db")) },
  { name: "postgres", open: async () => openPostgresStore(await freshDatabase()) },
];

const T0 = "2026-11-01T10:00:00.000Z";
const at = (minutes: number): string => new Date(Date.parse(T0) + minutes * 60_000).toISOString();

for (const engine of ENGINES) {
  describe(`${engine.name} store`, () => {
    let store: Store;
    let alice: User;
    let bob: User;
    const opened: Store[] = [];
    beforeEach(async () => {
      store = await engine.open();
      opened.push(store);
      alice = await store.createUser("alice");
      bob = await store.createUser("bob");
    });
    afterAll(async () => {
      for (const s of opened) await s.close();
    });
    const session = (id: string, patch: Partial<SessionRow> = {}): SessionRow =>
      sessionRow({ id, label: `label-${id}`, userId: alice.id, agentTokenHash: `agent-${id}`, createdAt: T0, ...patch });

    test("users and tokens", async () => {
      expect(await store.countUsers()).toBe(2);
      expect(await store.userByName("alice")).toEqual(alice);
      expect(await store.userById(bob.id)).toEqual(bob);
      expect(await store.userByName("carol")).toBeNull();
      await expect(store.createUser("alice")).rejects.toThrow();
      await store.addToken(alice.id, "tok-a");
      expect(await store.userByTokenHash("tok-a")).toEqual(alice);
      expect(await store.userByTokenHash("tok-x")).toBeNull();
    });

    test("a user recreated as it was (recovery from storage): same id, name and time; a name or id taken is refused", async () => {
      const carol = { id: crypto.randomUUID(), name: "carol", createdAt: T0 };
      await store.insertUser(carol);
      expect(await store.userById(carol.id)).toEqual(carol);
      expect(await store.userByName("carol")).toEqual(carol);
      await expect(store.insertUser({ ...carol, id: crypto.randomUUID() })).rejects.toThrow();
      await expect(store.insertUser({ ...carol, name: "dave" })).rejects.toThrow();
      expect(await store.countUsers()).toBe(3);
    });

    test("tokens: listed without the token, expire, and revoked once, ending the browser sessions they signed in", async () => {
      const past = new Date(Date.now() - 60_000).toISOString();
      const future = new Date(Date.now() + 3_600_000).toISOString();
      await store.addToken(alice.id, "tok-a");
      await store.addToken(alice.id, "tok-old", past);
      await store.addToken(bob.id, "tok-b", future);
      expect(await store.userByTokenHash("tok-a")).toEqual(alice);
      expect(await store.userByTokenHash("tok-old")).toBeNull();
      expect(await store.userByTokenHash("tok-b")).toEqual(bob);
      // (Made in the same millisecond, perhaps: sorted here.)
      const all = (await store.listTokens()).sort((x, y) => x.hash.localeCompare(y.hash));
      expect(all.map((t) => [t.hash, t.userName, t.expiresAt])).toEqual([["tok-a", "alice", null], ["tok-b", "bob", future], ["tok-old", "alice", past]]);
      expect(all[0]?.userId).toBe(alice.id);
      expect(Date.parse(all[0]?.createdAt ?? "")).toBeGreaterThan(0);
      expect((await store.listTokens(bob.id)).map((t) => t.hash)).toEqual(["tok-b"]);

      const later = new Date(Date.now() + 86_400_000).toISOString();
      await store.insertBrowserSession({ idHash: "w1", userId: alice.id, csrf: "c", createdAt: T0, expiresAt: later, tokenHash: "tok-a" });
      await store.insertBrowserSession({ idHash: "w2", userId: alice.id, csrf: "c", createdAt: T0, expiresAt: later, tokenHash: "tok-other" });
      await store.insertBrowserSession({ idHash: "w3", userId: alice.id, csrf: "c", createdAt: T0, expiresAt: later });
      expect(await store.browserSession("w1", T0)).toEqual({ idHash: "w1", userId: alice.id, csrf: "c", createdAt: T0, expiresAt: later });
      expect(await store.revokeToken("tok-a")).toBe(true);
      expect(await store.revokeToken("tok-a")).toBe(false);
      expect(await store.userByTokenHash("tok-a")).toBeNull();
      expect(await store.browserSession("w1", T0)).toBeNull();
      expect(await store.browserSession("w2", T0)).not.toBeNull();
      expect(await store.browserSession("w3", T0)).not.toBeNull();
      expect((await store.listTokens()).map((t) => t.hash).sort()).toEqual(["tok-b", "tok-old"]);
    });

    test("sessions: insert, look up by every key, list newest first, update, live ones", async () => {
      const full = session("s1", {
        command: ["bash", "-c", "echo 'hi' \"there\""],
        machine: { provider: "docker", id: "c".repeat(64), name: "catty-x" },
        ending: { status: "timed_out", reason: "idle" },
        attention: { state: "waiting", since: at(1) },
        expiresAt: at(60),
        idleTimeoutMs: 7_200_000_000,
      });
      await store.insertSession(full);
      await store.insertSession(session("s2", { createdAt: at(5), status: "stopped", endedAt: at(6), exitCode: 3, endReason: "exited" }));
      await store.insertSession(session("s3", { createdAt: at(5), userId: bob.id, status: "starting", machine: null }));
      // Same creation time as s2: the later insert lists first.
      await store.insertSession(session("s4", { createdAt: at(5), status: "stopping" }));
      expect(await store.sessionById("s1")).toEqual(full);
      expect(await store.sessionFor(alice.id, "label-s1")).toEqual(full);
      expect(await store.sessionFor(bob.id, "label-s1")).toBeNull();
      expect((await store.sessionByAgentTokenHash("agent-s2"))?.id).toBe("s2");
      expect(await store.labelTaken("label-s3")).toBe(true);
      expect(await store.labelTaken("label-zz")).toBe(false);
      await expect(store.insertSession(session("s5", { label: "label-s1" }))).rejects.toThrow();
      expect((await store.listSessions(alice.id)).map((s) => s.id)).toEqual(["s4", "s2", "s1"]);
      expect((await store.liveSessions()).map((s) => s.id).sort()).toEqual(["s1", "s3", "s4"]);

      const updated = await store.updateSession("s1", {
        status: "stopped", endedAt: at(9), exitCode: 0, endReason: "exited", lastScreen: "bye\n", cols: 120, rows: 40,
        restoreKey: null, finalSave: "stored", ending: null, attention: null, machine: null,
      });
      expect(updated).toMatchObject({ status: "stopped", endedAt: at(9), exitCode: 0, lastScreen: "bye\n", cols: 120, rows: 40, ending: null, attention: null, machine: null, finalSave: "stored" });
      expect(await store.sessionById("s1")).toEqual(updated!);
      expect(await store.updateSession("nope", { status: "failed" })).toBeNull();
      expect(await store.updateSession("s2", {})).toMatchObject({ id: "s2", exitCode: 3 });
    });

    test("an unreadable machine handle reads as none", async () => {
      await store.insertSession(session("s1", { machine: { provider: "local", pid: 1, dir: "/d" } }));
      // A handle of another shape (a newer server's, say) is not trusted.
      await store.updateSession("s1", { machine: { provider: "local", pid: -5, dir: "" } as never });
      expect((await store.sessionById("s1"))?.machine).toBeNull();
    });

    test("the proxy token and metered usage, added up per session and month", async () => {
      await store.insertSession(session("s1"));
      await store.insertSession(session("s2", { createdAt: at(1) }));
      await store.setProxyToken("s1", "proxy-1");
      expect((await store.sessionByProxyTokenHash("proxy-1"))?.id).toBe("s1");
      await store.setProxyToken("s1", null);
      expect(await store.sessionByProxyTokenHash("proxy-1")).toBeNull();
      const big = 3_000_000_000;
      await store.addUsage(alice.id, "s1", "2026-11", { input: 10, output: 20, cacheCreation: 1, cacheRead: big });
      await store.addUsage(alice.id, "s1", "2026-11", { input: 5, output: 5, cacheCreation: 0, cacheRead: big });
      await store.addUsage(alice.id, "s2", "2026-11", { input: 1, output: 1, cacheCreation: 1, cacheRead: 1 });
      await store.addUsage(alice.id, "s1", "2026-10", { input: 100, output: 0, cacheCreation: 0, cacheRead: 0 });
      expect(await store.usageOf(alice.id, "2026-11")).toEqual([
        { sessionId: "s2", label: "label-s2", month: "2026-11", requests: 1, input: 1, output: 1, cacheCreation: 1, cacheRead: 1 },
        { sessionId: "s1", label: "label-s1", month: "2026-11", requests: 2, input: 15, output: 25, cacheCreation: 1, cacheRead: 2 * big },
      ]);
      expect(await store.usageOf(bob.id, "2026-11")).toEqual([]);
      expect(await store.tokenQuota(alice.id)).toBeNull();
      await store.setTokenQuota(alice.id, 5_000_000_000);
      expect(await store.tokenQuota(alice.id)).toBe(5_000_000_000);
      await store.setTokenQuota(alice.id, null);
      expect(await store.tokenQuota(alice.id)).toBeNull();
    });

    test("quota holds: granted until usage and holds reach the quota, settled into usage, stale ones dropped", async () => {
      await store.insertSession(session("s1"));
      const hold = (id: string, tokens: number, createdAt = at(10), userId = alice.id) => ({ id, userId, month: "2026-11", tokens, createdAt });
      const usage = (tokens: number) => ({ userId: alice.id, sessionId: "s1", month: "2026-11", tokens: { input: tokens, output: 0, cacheCreation: 0, cacheRead: 0 } });
      // No quota: never refused, nothing held.
      expect(await store.holdTokens(hold("h0", 1e12), at(0))).toEqual({ ok: true });
      await store.setTokenQuota(alice.id, 1000);
      await store.addUsage(alice.id, "s1", "2026-11", { input: 300, output: 100, cacheCreation: 50, cacheRead: 50 });
      await store.addUsage(alice.id, "s1", "2026-10", { input: 5000, output: 0, cacheCreation: 0, cacheRead: 0 });
      expect(await store.holdTokens(hold("h1", 300), at(0))).toEqual({ ok: true });
      expect(await store.holdTokens(hold("h2", 199), at(0))).toEqual({ ok: true });
      // 500 used + 499 held: one token left, so one more (of any size) goes.
      expect(await store.holdTokens(hold("h3", 2000), at(0))).toEqual({ ok: true });
      expect(await store.holdTokens(hold("h4", 1), at(0))).toEqual({ ok: false, used: 500, held: 2499, quota: 1000 });
      expect(await store.holdTokens(hold("h4", 0), at(0))).toMatchObject({ ok: false });
      // Another user, and another month, are not touched.
      expect(await store.holdTokens({ ...hold("b1", 10), userId: bob.id }, at(0))).toEqual({ ok: true });
      expect(await store.holdTokens({ ...hold("m1", 10), month: "2026-12" }, at(0))).toEqual({ ok: true });
      // Settling ends the hold and records what was used, once.
      await store.settleHold("h3", usage(10));
      await store.settleHold("h2", null);
      expect((await store.usageOf(alice.id, "2026-11"))[0]).toMatchObject({ requests: 2, input: 310 });
      expect(await store.holdTokens(hold("h5", 10), at(0))).toEqual({ ok: true });
      await store.settleHold("h1", usage(480));
      expect(await store.holdTokens(hold("h6", 1), at(0))).toEqual({ ok: false, used: 990, held: 10, quota: 1000 });
      // A hold older than the stale mark no longer counts (its server died mid-request).
      expect(await store.holdTokens(hold("h7", 1, at(30)), at(11))).toEqual({ ok: true });
    });

    test("quota holds: of parallel requests against a small quota, only as many as fit are granted", async () => {
      await store.setTokenQuota(alice.id, 1000);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => store.holdTokens({ id: `p${i}`, userId: alice.id, month: "2026-11", tokens: 300, createdAt: at(1) }, at(0))),
      );
      // 0, 300, 600 and 900 held leave room; 1200 does not.
      expect(results.filter((r) => r.ok)).toHaveLength(4);
      expect(results.filter((r) => !r.ok)).toHaveLength(16);
    });

    test("browser sessions expire and are revoked", async () => {
      await store.insertBrowserSession({ idHash: "b1", userId: alice.id, csrf: "c", createdAt: T0, expiresAt: at(60) });
      expect(await store.browserSession("b1", at(30))).toEqual({ idHash: "b1", userId: alice.id, csrf: "c", createdAt: T0, expiresAt: at(60) });
      expect(await store.browserSession("b1", at(61))).toBeNull();
      await store.revokeBrowserSession("b1");
      expect(await store.browserSession("b1", at(30))).toBeNull();
    });

    const requester = { requesterAddress: "203.0.113.7", requesterAgent: "catty/1.0 (linux)" };

    test("device codes by either code, patched, with who asked for them", async () => {
      await store.insertDeviceCode({ deviceHash: "d1", userCode: "ABCD-EFGH", createdAt: T0, expiresAt: at(10), status: "pending", userId: null, polledAt: null, ...requester });
      expect(await store.deviceCodeByUserCode("ABCD-EFGH")).toMatchObject({ deviceHash: "d1", status: "pending", userId: null });
      await store.updateDeviceCode("d1", { status: "approved", userId: bob.id });
      await store.updateDeviceCode("d1", { polledAt: at(2) });
      expect(await store.deviceCodeByHash("d1")).toEqual({ deviceHash: "d1", userCode: "ABCD-EFGH", createdAt: T0, expiresAt: at(10), status: "approved", userId: bob.id, polledAt: at(2), ...requester });
      expect(await store.deviceCodeByHash("d2")).toBeNull();
    });

    test("an approved device code is redeemed once, by one of many racing polls; not when pending, denied or expired", async () => {
      const code = (hash: string, userCode: string, status: "pending" | "approved" | "denied", expiresAt = at(10)) =>
        store.insertDeviceCode({ deviceHash: hash, userCode, createdAt: T0, expiresAt, status, userId: status === "approved" ? bob.id : null, polledAt: null, ...requester });
      await code("r1", "BCDF-GHJK", "approved");
      const polls = await Promise.all(Array.from({ length: 12 }, () => store.redeemDeviceCode("r1", at(1))));
      expect(polls.filter((p) => p !== null)).toEqual([bob.id]);
      expect((await store.deviceCodeByHash("r1"))?.status).toBe("used");
      expect(await store.redeemDeviceCode("r1", at(1))).toBeNull();
      await code("r2", "BCDF-GHJL", "pending");
      await code("r3", "BCDF-GHJM", "denied");
      await code("r4", "BCDF-GHJN", "approved", at(1));
      expect(await store.redeemDeviceCode("r2", at(0))).toBeNull();
      expect(await store.redeemDeviceCode("r3", at(0))).toBeNull();
      expect(await store.redeemDeviceCode("r4", at(2))).toBeNull();
      expect(await store.redeemDeviceCode("nope", at(0))).toBeNull();
      expect((await store.deviceCodeByHash("r2"))?.status).toBe("pending");
      expect((await store.deviceCodeByHash("r4"))?.status).toBe("approved");
    });

    test("attach tickets work once, and not after they expire", async () => {
      await store.insertSession(session("s1"));
      await store.insertTicket({ hash: "t1", userId: alice.id, sessionId: "s1", viewer: true, expiresAt: at(1) });
      await store.insertTicket({ hash: "t2", userId: alice.id, sessionId: "s1", viewer: false, expiresAt: at(1) });
      expect(await store.takeTicket("t1", T0)).toEqual({ hash: "t1", userId: alice.id, sessionId: "s1", viewer: true, expiresAt: at(1) });
      expect(await store.takeTicket("t1", T0)).toBeNull();
      expect(await store.takeTicket("t2", at(2))).toBeNull();
      // Two takers at once: exactly one gets it.
      await store.insertTicket({ hash: "t3", userId: alice.id, sessionId: "s1", viewer: false, expiresAt: at(1) });
      const [a, b] = await Promise.all([store.takeTicket("t3", T0), store.takeTicket("t3", T0)]);
      expect([a, b].filter((t) => t !== null)).toHaveLength(1);
    });

    test("port grants: a ticket works once, cookies and shares until they expire or are revoked; shares listed newest first", async () => {
      await store.insertSession(session("s1"));
      await store.insertSession(session("s2"));
      const grant = (hash: string, kind: "ticket" | "cookie" | "share", sessionId: string, port: number, createdAt: string, expiresAt: string) =>
        ({ hash, kind, userId: alice.id, sessionId, port, createdAt, expiresAt, revokedAt: null }) as const;
      await store.insertPortGrant(grant("t1", "ticket", "s1", 3000, T0, at(1)));
      await store.insertPortGrant(grant("c1", "cookie", "s1", 3000, T0, at(60)));
      await store.insertPortGrant(grant("sh1", "share", "s1", 3000, T0, at(60)));
      await store.insertPortGrant(grant("sh2", "share", "s1", 8080, at(1), at(60)));
      await store.insertPortGrant(grant("sh3", "share", "s2", 3000, T0, at(60)));
      await store.insertPortGrant(grant("old", "share", "s1", 3000, T0, at(1)));
      expect(await store.takePortGrant("t1", T0)).toEqual(grant("t1", "ticket", "s1", 3000, T0, at(1)));
      expect(await store.takePortGrant("t1", T0)).toBeNull();
      expect(await store.takePortGrant("c1", at(2))).toEqual(grant("c1", "cookie", "s1", 3000, T0, at(60)));
      expect(await store.takePortGrant("c1", at(2))).not.toBeNull();
      expect(await store.takePortGrant("old", at(2))).toBeNull();
      expect(await store.takePortGrant("nope", T0)).toBeNull();
      expect((await store.listShares("s1", at(2))).map((g) => g.hash)).toEqual(["sh2", "sh1"]);
      // Two takers of one ticket at once: exactly one gets it.
      await store.insertPortGrant(grant("t2", "ticket", "s1", 3000, T0, at(1)));
      const both = await Promise.all([store.takePortGrant("t2", T0), store.takePortGrant("t2", T0)]);
      expect(both.filter((g) => g !== null)).toHaveLength(1);
      // Revoking one port's share links of one session leaves the others, and signed-in previews.
      expect(await store.revokeShares("s1", 3000, at(3))).toBe(1);
      expect(await store.takePortGrant("sh1", at(3))).toBeNull();
      expect(await store.takePortGrant("c1", at(3))).not.toBeNull();
      expect(await store.takePortGrant("sh2", at(3))).not.toBeNull();
      expect(await store.takePortGrant("sh3", at(3))).not.toBeNull();
      expect(await store.revokeShares("s1", null, at(3))).toBe(1);
      expect(await store.revokeShares("s1", null, at(3))).toBe(0);
      expect(await store.listShares("s1", at(3))).toEqual([]);
      expect((await store.listShares("s2", at(3))).map((g) => g.hash)).toEqual(["sh3"]);
    });

    test("saves: newest first, by key, of a user, deleted", async () => {
      await store.insertSession(session("s1"));
      await store.insertSession(session("s2", { userId: bob.id }));
      const save = (id: string, sessionId: string, createdAt: string, added: number | null) =>
        ({ id, sessionId, key: `vault:${id}`, createdAt, size: 5_000_000_000, files: 20_000, reason: "periodic", added });
      await store.insertSave(save("v1", "s1", at(1), null));
      await store.insertSave(save("v2", "s1", at(2), 12));
      await store.insertSave(save("v3", "s1", at(2), 0));
      await store.insertSave(save("v4", "s2", at(3), 7));
      expect(await store.listSaves("s1")).toEqual([save("v3", "s1", at(2), 0), save("v2", "s1", at(2), 12), save("v1", "s1", at(1), null)]);
      expect(await store.saveKeyExists("vault:v2")).toBe(true);
      expect(await store.saveKeyExists("vault:v9")).toBe(false);
      expect((await store.savesOfUser(alice.id)).map((s) => s.id).sort()).toEqual(["v1", "v2", "v3"]);
      await store.deleteSave("v2");
      expect((await store.listSaves("s1")).map((s) => s.id)).toEqual(["v3", "v1"]);
    });

    test("uploads are taken once, by their user only", async () => {
      const up = (id: string, userId: string, createdAt: string) => ({ id, userId, key: `vault:${id}`, size: 4_500_000_000, createdAt });
      await store.insertUpload(up("u1", alice.id, at(1)));
      await store.insertUpload(up("u2", alice.id, at(5)));
      expect(await store.uploadKeyExists("vault:u1")).toBe(true);
      expect((await store.uploadsOfUser(alice.id)).map((u) => u.id).sort()).toEqual(["u1", "u2"]);
      expect(await store.staleUploads(at(3))).toEqual([up("u1", alice.id, at(1))]);
      expect(await store.takeUpload(bob.id, "u1")).toBeNull();
      const [a, b] = await Promise.all([store.takeUpload(alice.id, "u1"), store.takeUpload(alice.id, "u1")]);
      expect([a, b].filter((u) => u !== null)).toEqual([up("u1", alice.id, at(1))]);
      await store.deleteUpload("u2");
      expect(await store.uploadsOfUser(alice.id)).toEqual([]);
    });

    test("a user's save key: the first stored wins", async () => {
      expect(await store.userKey(alice.id)).toBeNull();
      const [a, b] = await Promise.all([store.insertUserKey(alice.id, "wrapped-1"), store.insertUserKey(alice.id, "wrapped-2")]);
      expect(a).toBe(b);
      expect(await store.userKey(alice.id)).toBe(a);
      expect(await store.insertUserKey(alice.id, "wrapped-3")).toBe(a);
    });

    test("the blob index: lookups of many, first location kept, grouped blobs, per user; deletions are counted", async () => {
      await store.insertUserKey(alice.id, "wrapped");
      await store.insertUserKey(bob.id, "wrapped");
      const ids = Array.from({ length: 1234 }, (_, i) => `${i}`.padStart(64, "0"));
      const inserted = await store.insertBlobs(alice.id, ids.map((id, i) => ({ id, pack: `vault/a/p${i % 3}`, offset: i * 5_000_000, length: 100 + i, ...(i === 5 ? { grouped: true } : {}) })));
      expect(inserted).toEqual(new Set(ids));
      // Rows already there are left as they are, and are not among those inserted.
      expect(await store.insertBlobs(alice.id, [{ id: ids[0]!, pack: "vault/a/other", offset: 1, length: 1 }, { id: "e".repeat(64), pack: "vault/a/other", offset: 2, length: 2 }])).toEqual(
        new Set(["e".repeat(64)]),
      );
      expect(await store.insertBlobs(bob.id, [{ id: ids[1]!, pack: "vault/b/p", offset: 0, length: 9 }])).toEqual(new Set([ids[1]!]));
      expect(await store.insertBlobs(alice.id, [])).toEqual(new Set());
      const asked = [...ids.slice(0, 700), "f".repeat(64), ...ids.slice(700)];
      const present = await store.blobsPresent(alice.id, asked);
      expect(present.size).toBe(1234);
      expect(present.has("f".repeat(64))).toBe(false);
      const where = await store.blobLocations(alice.id, [ids[0]!, ids[1233]!]);
      expect(where.get(ids[0]!)).toEqual({ pack: "vault/a/p0", offset: 0, length: 100 });
      expect(where.get(ids[1233]!)).toEqual({ pack: "vault/a/p0", offset: 1233 * 5_000_000, length: 1333 });
      expect((await store.blobLocations(alice.id, [ids[5]!])).get(ids[5]!)).toEqual({ pack: "vault/a/p2", offset: 25_000_000, length: 105, grouped: true });
      expect([...(await store.blobLocations(bob.id, ids.slice(0, 3))).keys()]).toEqual([ids[1]!]);
      expect(await store.blobLocations(alice.id, [])).toEqual(new Map());
      expect((await store.blobsOfUser(bob.id))).toEqual([{ id: ids[1]!, pack: "vault/b/p" }]);
      expect((await store.usersWithBlobs()).sort()).toEqual([alice.id, bob.id].sort());
      expect(await store.blobDeletions(alice.id)).toBe(0);
      await store.deleteBlobs(alice.id, ids.slice(0, 1000));
      expect((await store.blobsOfUser(alice.id)).length).toBe(235);
      await store.deleteBlobs(alice.id, []);
      expect(await store.blobDeletions(alice.id)).toBe(1);
      expect(await store.blobDeletions(bob.id)).toBe(0);
      expect((await store.blobsPresent(bob.id, [ids[1]!])).size).toBe(1);
    });

    test("a session's end is recorded once: the second ending finds it ended", async () => {
      await store.insertSession(session("e1"));
      const patch = { status: "stopped" as const, endReason: "first", endedAt: at(1) };
      const [a, b] = await Promise.all([store.endSession("e1", patch), store.endSession("e1", { ...patch, endReason: "second" })]);
      expect([a, b].filter((r) => r !== null)).toHaveLength(1);
      const row = await store.sessionById("e1");
      expect(row?.status).toBe("stopped");
      expect(row?.endReason).toBe((a ?? b)?.endReason as string);
      expect(await store.endSession("e1", { status: "failed" })).toBeNull();
      expect((await store.sessionById("e1"))?.status).toBe("stopped");
      expect(await store.endSession("missing", { status: "failed" })).toBeNull();
    });

    test("the relay replica and the last activity of a session are stored and patched", async () => {
      await store.insertSession(session("r1"));
      expect((await store.sessionById("r1"))?.relayReplica).toBeNull();
      expect((await store.updateSession("r1", { relayReplica: "rep-a" }))?.relayReplica).toBe("rep-a");
      expect((await store.liveSessions()).find((r) => r.id === "r1")?.relayReplica).toBe("rep-a");
      expect((await store.sessionById("r1"))?.lastActivityAt).toBeNull();
      expect((await store.updateSession("r1", { lastActivityAt: at(3) }))?.lastActivityAt).toBe(at(3));
    });

    test("replicas: heartbeats, the live ones, removal", async () => {
      await store.beatReplica({ id: "rep-a", url: "http://10.0.0.1:8080" }, at(0));
      await store.beatReplica({ id: "rep-b", url: "http://10.0.0.2:8080" }, at(0));
      await store.beatReplica({ id: "rep-a", url: "http://10.0.0.9:8080" }, at(2));
      const live = await store.replicas(at(1));
      expect(live.map((r) => [r.id, r.url, r.startedAt, r.seenAt])).toEqual([["rep-a", "http://10.0.0.9:8080", at(0), at(2)]]);
      expect((await store.replicas(at(0))).map((r) => r.id).sort()).toEqual(["rep-a", "rep-b"]);
      await store.removeReplica("rep-a");
      expect((await store.replicas(at(0))).map((r) => r.id)).toEqual(["rep-b"]);
    });

    test("leases: one holder until it expires or is released; racing takers get it once", async () => {
      const results = await Promise.all(["a", "b", "c", "d"].map((h) => store.takeLease("duties", h, at(10), at(0))));
      expect(results.filter(Boolean)).toHaveLength(1);
      const holder = ["a", "b", "c", "d"][results.indexOf(true)] as string;
      const other = holder === "a" ? "b" : "a";
      expect(await store.leaseHeld("duties", at(5))).toBe(true);
      expect(await store.takeLease("duties", other, at(15), at(5))).toBe(false);
      expect(await store.takeLease("duties", holder, at(20), at(5))).toBe(true); // renewed
      expect(await store.takeLease("duties", other, at(25), at(15))).toBe(false);
      expect(await store.takeLease("duties", other, at(30), at(20))).toBe(true); // expired: taken over
      await store.releaseLease("duties", holder); // not its lease any more: nothing happens
      expect(await store.leaseHeld("duties", at(21))).toBe(true);
      await store.releaseLease("duties", other);
      expect(await store.leaseHeld("duties", at(21))).toBe(false);
      expect(await store.takeLease("duties", holder, at(40), at(21))).toBe(true);
      expect(await store.takeLease("other", other, at(40), at(21))).toBe(true);
    });

    test("server state: set, replaced, removed, by name", async () => {
      expect(await store.serverState("tls:account")).toBeNull();
      await store.setServerState("tls:account", '{"a":1}', at(0));
      await store.setServerState("tls:certificate:catty.example.com", "pem", at(0));
      await store.setServerState("tls:account", '{"a":2}', at(1));
      expect(await store.serverState("tls:account")).toBe('{"a":2}');
      await store.setServerState("tls:account", null, at(2));
      expect(await store.serverState("tls:account")).toBeNull();
      expect(await store.serverState("tls:certificate:catty.example.com")).toBe("pem");
    });

    test("transfers: by id and session, counted bytes past 32 bits, expiry, per user", async () => {
      await store.insertSession(session("t1"));
      const base = Date.parse(T0);
      const save = { id: "x1", kind: "save" as const, userId: alice.id, sessionId: "t1", reason: "periodic", startedAt: base, expiresAt: base + 60_000, added: 0, cap: 5e9 };
      await store.insertTransfer(save);
      await store.insertTransfer({ ...save, id: "u1", kind: "upload", sessionId: null, reason: "upload", userId: bob.id, expiresAt: base + 10_000 });
      expect(await store.transferById("x1")).toEqual(save);
      expect((await store.sessionTransfer("t1"))?.id).toBe("x1");
      expect(await store.sessionTransfer("t2")).toBeNull();
      expect(await store.addTransferBytes("x1", 3_000_000_000)).toBe(3_000_000_000);
      expect(await store.addTransferBytes("x1", 3_000_000_000)).toBe(6_000_000_000);
      expect(await store.addTransferBytes("nope", 1)).toBeNull();
      expect(await store.userHasTransfers(bob.id, base + 5_000)).toBe(true);
      expect(await store.userHasTransfers(bob.id, base + 10_000)).toBe(false);
      expect(await store.deleteExpiredTransfers(base + 10_000)).toBe(1);
      expect(await store.transferById("u1")).toBeNull();
      await store.deleteSessionTransfers("t1");
      expect(await store.transferById("x1")).toBeNull();
      expect(await store.userHasTransfers(alice.id, base)).toBe(false);
      await store.insertTransfer({ ...save, id: "x2" });
      await store.deleteTransfer("x2");
      expect(await store.sessionTransfer("t1")).toBeNull();
    });
  });
}

describe("postgres store schema", () => {
  test("replicas starting at once on a new database apply the schema once, and a newer schema is refused", async () => {
    const url = await freshDatabase();
    const stores = await Promise.all([openPostgresStore(url), openPostgresStore(url), openPostgresStore(url)]);
    await stores[0]!.createUser("owner");
    for (const s of stores) expect(await s.countUsers()).toBe(1);
    for (const s of stores) await s.close();
    const sql = new SQL(url, { max: 1 });
    expect((await sql`SELECT version FROM catty_schema`) as unknown[]).toHaveLength(1);
    await sql`UPDATE catty_schema SET version = 99`;
    await sql.close();
    await expect(openPostgresStore(url)).rejects.toThrow(/written by a newer catty-server \(schema 99\)/);
  });

  test("an unreachable database is a clear error without the password", async () => {
    const err = await openPostgresStore("postgres://catty:s3cret-pw@127.0.0.1:1/catty").catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^Could not open the database at postgres:\/\/catty:\*\*\*@127\.0\.0\.1:1\/catty: /);
    expect((err as Error).message).not.toContain("s3cret-pw");
  });
});
