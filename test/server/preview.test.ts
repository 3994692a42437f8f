/**
 * Preview hosts and grants (server/preview.ts): which Host headers name a session's port (and
 * nothing else does), where links point, and the one scope check every grant goes through.
 */
import { describe, expect, test } from "bun:test";
import { grantAllows, previewTarget, previewUrl } from "../../server/preview.ts";
import type { PortGrant, SessionRow } from "../../server/store/types.ts";
import { sessionRow } from "../helpers/rows.ts";

describe("preview hosts", () => {
  test("LABEL-PORT under localhost or the preview domain, any letter case, with or without a port", () => {
    expect(previewTarget("brave-tiger-1234-3000.localhost:4815", null)).toEqual({ label: "brave-tiger-1234", port: 3000 });
    expect(previewTarget("Brave-Tiger-1234-3000.LOCALHOST", null)).toEqual({ label: "brave-tiger-1234", port: 3000 });
    expect(previewTarget("brave-tiger-1234-8080.preview.example.com", "preview.example.com")).toEqual({ label: "brave-tiger-1234", port: 8080 });
    expect(previewTarget("brave-tiger-1234-65535.localhost.", null)).toEqual({ label: "brave-tiger-1234", port: 65535 });
  });

  test("anything else is not a preview host: the dashboard, other domains, bad ports and labels, junk", () => {
    for (const host of [
      undefined,
      "",
      "localhost:4815",
      "127.0.0.1:4815",
      "catty.example.com",
      "brave-tiger-1234-3000.evil.com",
      "brave-tiger-1234-3000.preview.example.com.evil.com",
      "brave-tiger-1234-3000.localhost.evil.com",
      "x.brave-tiger-1234-3000.localhost",
      "brave-tiger-1234-0.localhost",
      "brave-tiger-1234-65536.localhost",
      "brave-tiger-1234-999999.localhost",
      "brave-tiger-12345-3000.localhost",
      "brave_tiger-1234-3000.localhost",
      "brave-tiger-1234.localhost",
      "b-tiger-1234-3000.localhost",
      "brave-tiger-1234-3000.localhost:99999999",
      `${"a".repeat(400)}-tiger-1234-3000.localhost`,
      "brave-tiger-1234-3000.localhost\r\nX: y",
    ]) {
      expect({ host, target: previewTarget(host, "preview.example.com") }).toEqual({ host, target: null });
    }
    // Without a preview domain, only localhost counts.
    expect(previewTarget("brave-tiger-1234-3000.preview.example.com", null)).toBeNull();
  });

  test("links: under the preview domain over HTTPS; under localhost only when the server is reached on loopback", () => {
    const t = { label: "brave-tiger-1234", port: 3000 };
    expect(previewUrl("http://127.0.0.1:4815", t, null)).toBe("http://brave-tiger-1234-3000.localhost:4815/");
    expect(previewUrl("http://localhost:4815", t, null)).toBe("http://brave-tiger-1234-3000.localhost:4815/");
    expect(previewUrl("https://catty.example.com", t, "preview.example.com")).toBe("https://brave-tiger-1234-3000.preview.example.com/");
    expect(previewUrl("https://catty.example.com", t, null)).toBeNull();
  });
});

describe("grantAllows", () => {
  const row: SessionRow = sessionRow({ id: "s1", label: "brave-tiger-1234", userId: "u1", status: "running" });
  const grant: PortGrant = { hash: "h", kind: "cookie", userId: "u1", sessionId: "s1", port: 3000, createdAt: "", expiresAt: "", revokedAt: null };
  const target = { label: "brave-tiger-1234", port: 3000 };

  test("its kind, session, port, owner, and a live session", () => {
    expect(grantAllows(grant, row, target, ["cookie", "share"])).toBe(true);
    expect(grantAllows(grant, row, target, ["ticket"])).toBe(false);
    expect(grantAllows(null, row, target, ["cookie"])).toBe(false);
    expect(grantAllows(grant, null, target, ["cookie"])).toBe(false);
    expect(grantAllows(grant, row, { ...target, port: 3001 }, ["cookie"])).toBe(false);
    expect(grantAllows(grant, row, { ...target, label: "other-tiger-1234" }, ["cookie"])).toBe(false);
    expect(grantAllows({ ...grant, sessionId: "s2" }, row, target, ["cookie"])).toBe(false);
    // A session that changed hands (or a grant made for someone else) opens nothing.
    expect(grantAllows({ ...grant, userId: "u2" }, row, target, ["cookie"])).toBe(false);
    expect(grantAllows(grant, { ...row, status: "stopped" }, target, ["cookie"])).toBe(false);
  });
});
