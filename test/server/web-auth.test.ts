/**
 * Signing in from a browser and the CLI's device-code login, against a real server: cookie flags,
 * CSRF and Origin checks, sign-out revoking the cookie, the rate limit, one-use WebSocket tickets
 * (reuse, foreign origin and a cookie alone refused; a view-only ticket stays a viewer), another
 * user's session out of sight, and the device flow's pending / slow_down / approve / deny / used.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createUserToken } from "../../server/startup.ts";
import { RateLimit } from "../../server/routes/web-auth.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
let label: string;

beforeAll(async () => {
  server = await startTestServer();
  label = (await server.owner.create({ command: ["bash", "-c", "echo web-ready; sleep 300"], cols: 80, rows: 24 })).label;
});

afterAll(async () => {
  for (const s of await server.owner.list()) await server.owner.stop(s.label).catch(() => {});
  await server.stop();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

/** Signs in with `token`; resolves to the cookie header value and the CSRF token. */
async function signIn(token: string): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const res = await post("/v1/web/login", { token });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get("set-cookie") ?? "";
  const { csrf } = (await res.json()) as { csrf: string };
  return { cookie: setCookie.split(";")[0] as string, csrf, setCookie };
}

describe("browser sign-in", () => {
  test("a token buys an HttpOnly, SameSite=Lax cookie; a wrong token does not", async () => {
    expect((await post("/v1/web/login", { token: "cat_wrong" })).status).toBe(401);
    const { setCookie, cookie } = await signIn(server.ownerToken);
    expect(setCookie).toMatch(/^catty_session=[\w-]{40,};/);
    expect(setCookie).toContain("HttpOnly");
    expect(setCookie).toContain("SameSite=Lax");
    expect(setCookie).toContain("Path=/");
    expect(setCookie).toMatch(/Max-Age=\d+/);
    expect(setCookie).not.toContain("Secure"); // plain http on loopback
    const me = await fetch(`${server.url}/v1/web/me`, { headers: { cookie } });
    expect(((await me.json()) as { user: string }).user).toBe("owner");
  });

  test("state-changing requests need the CSRF token and no foreign Origin", async () => {
    const { cookie, csrf } = await signIn(server.ownerToken);
    const list = await fetch(`${server.url}/v1/sessions`, { headers: { cookie } });
    expect(list.status).toBe(200);
    const stopPath = `/v1/sessions/${label}/ticket`;
    expect((await post(stopPath, {}, { cookie })).status).toBe(403);
    expect((await post(stopPath, {}, { cookie, "x-csrf-token": "nope" })).status).toBe(403);
    expect((await post(stopPath, {}, { cookie, "x-csrf-token": csrf, origin: "https://evil.example" })).status).toBe(403);
    expect((await post(stopPath, {}, { cookie, "x-csrf-token": csrf, origin: server.url })).status).toBe(200);
  });

  test("sign-out revokes the cookie", async () => {
    const { cookie, csrf } = await signIn(server.ownerToken);
    const out = await post("/v1/web/logout", {}, { cookie, "x-csrf-token": csrf });
    expect(out.status).toBe(200);
    expect(out.headers.get("set-cookie")).toContain("catty_session=;");
    expect((await fetch(`${server.url}/v1/sessions`, { headers: { cookie } })).status).toBe(401);
  });

  test("another user sees none of the owner's sessions", async () => {
    const bob = await createUserToken(server.store(), "bob");
    const res = await fetch(`${server.url}/v1/sessions/${label}`, { headers: { authorization: `Bearer ${bob}` } });
    expect(res.status).toBe(404);
    const tickets = await fetch(`${server.url}/v1/sessions/${label}/ticket`, { method: "POST", headers: { authorization: `Bearer ${bob}`, "content-type": "application/json" }, body: "{}" });
    expect(tickets.status).toBe(404);
  });
});

describe("WebSocket tickets", () => {
  const wsUrl = (q: string) => `${server.url.replace("http", "ws")}/v1/sessions/${label}/attach${q}`;
  const ticket = async (view = false): Promise<string> => {
    const res = await fetch(`${server.url}/v1/sessions/${label}/ticket`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.ownerToken}`, "content-type": "application/json" },
      body: JSON.stringify({ view }),
    });
    return ((await res.json()) as { ticket: string }).ticket;
  };
  /** Opens a socket and says hello; resolves to the first message, or to "closed"/"error". */
  const attach = (url: string, headers: Record<string, string> = {}, mode = "interactive"): Promise<string> =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { headers } as never);
      ws.onopen = () => ws.send(JSON.stringify({ type: "hello", protocol: 1, mode, offset: 0, cols: 80, rows: 24, syncBack: null, instance: crypto.randomUUID(), reconnect: false }));
      ws.onmessage = (e) => {
        resolve(typeof e.data === "string" ? e.data : "binary");
        ws.close();
      };
      ws.onerror = () => resolve("error");
      ws.onclose = () => resolve("closed");
    });

  test("a ticket opens the attach socket once; reuse, a foreign Origin and a cookie alone are refused", async () => {
    const t = await ticket();
    expect(await attach(wsUrl(`?ticket=${t}`), { origin: server.url })).toContain('"attached"');
    expect(await attach(wsUrl(`?ticket=${t}`))).toMatch(/error|closed/);
    expect(await attach(wsUrl(`?ticket=${await ticket()}`), { origin: "https://evil.example" })).toMatch(/error|closed/);
    const { cookie } = await signIn(server.ownerToken);
    expect(await attach(wsUrl(""), { cookie })).toMatch(/error|closed/);
  });

  test("a view-only ticket attaches as a viewer whatever the hello says", async () => {
    const first = await attach(wsUrl(`?ticket=${await ticket(true)}`), {}, "interactive");
    expect(JSON.parse(first)).toMatchObject({ type: "attached", mode: "view" });
  });
});

describe("device-code login", () => {
  test("pending, slow_down, approval in the browser (which sees who asked), a token once to racing polls; then used", async () => {
    const start = (await (await post("/v1/device/code", {}, { "user-agent": "catty/test (linux x64; build-box)" })).json()) as {
      deviceCode: string; userCode: string; verificationUri: string; verificationUriComplete: string; interval: number; expiresIn: number;
    };
    expect(start.userCode).toMatch(/^[B-Z]{4}-[B-Z]{4}$/);
    expect(start.verificationUri).toBe(`${server.url}/device`);
    // The link does not carry the code: the person types it.
    expect(start.verificationUriComplete).toBe(`${server.url}/device`);
    expect(start.interval).toBe(5);
    const poll = async () => {
      const res = await post("/v1/device/token", { deviceCode: start.deviceCode });
      return { status: res.status, body: (await res.json()) as { error?: string; token?: string; user?: string } };
    };
    expect((await poll()).body.error).toBe("authorization_pending");
    expect((await poll()).body.error).toBe("slow_down");

    const { cookie, csrf } = await signIn(server.ownerToken);
    const shown = await fetch(`${server.url}/v1/device/${start.userCode.toLowerCase().replace("-", "")}`, { headers: { cookie } });
    const request = (await shown.json()) as { userCode: string; createdAt: string; requester: { address: string; userAgent: string } };
    expect(request.userCode).toBe(start.userCode);
    expect(request.requester).toEqual({ address: "127.0.0.1", userAgent: "catty/test (linux x64; build-box)" });
    expect(Math.abs(Date.parse(request.createdAt) - Date.now())).toBeLessThan(60_000);
    expect((await post("/v1/device/approve", { userCode: start.userCode, approve: true }, { cookie })).status).toBe(403); // no CSRF
    expect((await post("/v1/device/approve", { userCode: start.userCode, approve: true }, { cookie, "x-csrf-token": csrf })).status).toBe(200);
    // Polls racing after the approval: exactly one gets a token.
    const racing = await Promise.all(Array.from({ length: 8 }, () => poll()));
    const granted = racing.filter((r) => r.status === 200);
    expect(granted).toHaveLength(1);
    expect(racing.filter((r) => r.status !== 200).map((r) => r.body.error)).toEqual(Array(7).fill("expired_token"));
    const done = granted[0] as (typeof racing)[number];
    expect(done.body.user).toBe("owner");
    const who = await fetch(`${server.url}/v1/whoami`, { headers: { authorization: `Bearer ${done.body.token}` } });
    expect(((await who.json()) as { user: string }).user).toBe("owner");
    expect((await poll()).body.error).toBe("expired_token");
  });

  test("denied in the browser: access_denied", async () => {
    const start = (await (await post("/v1/device/code", {})).json()) as { deviceCode: string; userCode: string };
    const { cookie, csrf } = await signIn(server.ownerToken);
    await post("/v1/device/approve", { userCode: start.userCode, approve: false }, { cookie, "x-csrf-token": csrf });
    const res = await post("/v1/device/token", { deviceCode: start.deviceCode });
    expect(((await res.json()) as { error: string }).error).toBe("access_denied");
    expect((await post("/v1/device/token", { deviceCode: "dev_unknown" })).status).toBe(400);
  });
});

describe("behind TLS termination", () => {
  /** Signs in at `base` with `headers` (as a proxy or a browser sends them); the answer and the cookie. */
  const signInAt = async (base: string, token: string, headers: Record<string, string>) => {
    const res = await fetch(`${base}/v1/web/login`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ token }) });
    expect(res.status).toBe(200);
    const { csrf } = (await res.json()) as { csrf: string };
    return { res, csrf, cookie: (res.headers.get("set-cookie") ?? "").split(";")[0] as string };
  };

  test("a trusted proxy's X-Forwarded-Proto: https: Secure cookies, HSTS, an https Origin accepted (requests and WebSockets), https device links", async () => {
    const proxied = await startTestServer({ env: { CATTY_TRUSTED_PROXIES: "127.0.0.1" } });
    try {
      const host = new URL(proxied.url).host;
      const viaTls = { "x-forwarded-proto": "https" };
      const { res, csrf, cookie } = await signInAt(proxied.url, proxied.ownerToken, viaTls);
      expect(res.headers.get("set-cookie")).toContain("Secure");
      expect(res.headers.get("strict-transport-security")).toBe("max-age=31536000");
      const session = await proxied.owner.create({ command: ["bash", "-c", "echo up; sleep 60"], cols: 80, rows: 24 });
      const ticketAt = (origin: string) =>
        fetch(`${proxied.url}/v1/sessions/${session.label}/ticket`, {
          method: "POST",
          headers: { ...viaTls, cookie, "x-csrf-token": csrf, origin, "content-type": "application/json" },
          body: "{}",
        });
      // The browser's page is https://host: its Origin is this server's, and http://host is not.
      expect((await ticketAt(`http://${host}`)).status).toBe(403);
      const ok = await ticketAt(`https://${host}`);
      expect(ok.status).toBe(200);
      const { ticket } = (await ok.json()) as { ticket: string };
      const opened = await new Promise<boolean>((resolve) => {
        const ws = new WebSocket(`${proxied.url.replace("http", "ws")}/v1/sessions/${session.label}/attach?ticket=${ticket}`, { headers: { ...viaTls, origin: `https://${host}` } } as never);
        ws.onopen = () => {
          resolve(true);
          ws.close();
        };
        ws.onerror = () => resolve(false);
        ws.onclose = () => resolve(false);
      });
      expect(opened).toBe(true);
      const start = (await (await fetch(`${proxied.url}/v1/device/code`, { method: "POST", headers: viaTls })).json()) as { verificationUri: string };
      expect(start.verificationUri).toBe(`https://${host}/device`);
      await proxied.owner.stop(session.label);
    } finally {
      await proxied.stop();
    }
  });

  test("CATTY_PUBLIC_URL https://…: requests to its host are https; anyone's X-Forwarded-Proto is not believed", async () => {
    const pub = await startTestServer({ env: { CATTY_PUBLIC_URL: "https://catty.example.test" } });
    try {
      const atPublic = { host: "catty.example.test" };
      const { res, csrf, cookie } = await signInAt(pub.url, pub.ownerToken, atPublic);
      expect(res.headers.get("set-cookie")).toContain("Secure");
      expect(res.headers.get("strict-transport-security")).toBe("max-age=31536000");
      const logout = (origin: string) => fetch(`${pub.url}/v1/web/logout`, { method: "POST", headers: { ...atPublic, cookie, "x-csrf-token": csrf, origin } });
      expect((await logout("http://catty.example.test")).status).toBe(403);
      expect((await logout("https://catty.example.test")).status).toBe(200);
      const start = (await (await fetch(`${pub.url}/v1/device/code`, { method: "POST", headers: atPublic })).json()) as { verificationUri: string };
      expect(start.verificationUri).toBe("https://catty.example.test/device");
      // On another host, and from a peer that is no trusted proxy, the connection's scheme holds.
      const plain = await signInAt(pub.url, pub.ownerToken, { "x-forwarded-proto": "https" });
      expect(plain.res.headers.get("set-cookie")).not.toContain("Secure");
      expect(plain.res.headers.get("strict-transport-security")).toBeNull();
    } finally {
      await pub.stop();
    }
  });
});

describe("the rate limiter", () => {
  test("holding 10,000 keys, it forgets the one hit longest ago, never the count of an address being limited", () => {
    const limit = new RateLimit(3);
    const now = Date.now();
    for (let i = 0; i < 10_000; i++) limit.hit(`203.0.${i >> 8}.${i & 255}`, now);
    expect(limit.size).toBe(10_000);
    for (let i = 0; i < 3; i++) limit.hit("198.51.100.9", now);
    expect(limit.exceeded("198.51.100.9", now)).toBe(true);
    // The oldest key went, and only it.
    expect(limit.size).toBe(10_000);
    // Another 5,000 addresses arrive: the limited one is still limited.
    for (let i = 0; i < 5_000; i++) limit.hit(`192.0.2.${i}`, now + 1);
    expect(limit.size).toBe(10_000);
    expect(limit.exceeded("198.51.100.9", now + 1)).toBe(true);
    expect(limit.take("198.51.100.9", now + 1)).toBe(false);
    // A minute on, its window has passed.
    expect(limit.take("198.51.100.9", now + 60_001)).toBe(true);
    // Asking about an address it never saw holds nothing.
    expect(limit.exceeded("2001:db8::1", now)).toBe(false);
    expect(limit.size).toBe(10_000);
  });
});

describe("the sign-in limit (last: it locks this address out for a minute)", () => {
  test("failed sign-ins are rate-limited per address (a right token then waits too)", async () => {
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) codes.push((await post("/v1/web/login", { token: `cat_guess_${i}` })).status);
    expect(codes).toContain(429);
    expect(codes.slice(-1)[0]).toBe(429);
    expect((await post("/v1/web/login", { token: server.ownerToken })).status).toBe(429);
    // Without trusted proxies a client cannot say it is someone else.
    expect((await post("/v1/web/login", { token: server.ownerToken }, { "x-forwarded-for": "203.0.113.99" })).status).toBe(429);
  });

  test("behind a trusted proxy, the limit is per client the proxy names, not per proxy", async () => {
    const proxied = await startTestServer({ env: { CATTY_TRUSTED_PROXIES: "127.0.0.0/8,::1" } });
    try {
      const from = (address: string) => ({ "x-forwarded-for": `${address}, 127.0.0.1` });
      const login = (token: string, address: string) =>
        fetch(`${proxied.url}/v1/web/login`, { method: "POST", headers: { "content-type": "application/json", ...from(address) }, body: JSON.stringify({ token }) });
      const codes: number[] = [];
      for (let i = 0; i < 12; i++) codes.push((await login(`cat_guess_${i}`, "203.0.113.7")).status);
      expect(codes.slice(-1)[0]).toBe(429);
      expect((await login(proxied.ownerToken, "203.0.113.7")).status).toBe(429);
      // Another client behind the same proxy signs in.
      expect((await login(proxied.ownerToken, "198.51.100.4")).status).toBe(200);
    } finally {
      await proxied.stop();
    }
  });
});
