/**
 * The forward's stream pumping (src/lib/mux.ts) between two real `Mux`es over an in-memory link
 * that can be cut: windows hold a fast writer back, half-close passes, a cut link resumes with
 * every byte once, and a peer's garbage is refused.
 */
import { describe, expect, test } from "bun:test";
import { encodeMuxFrame, ForwardMessage, MUX_DATA, MUX_OPEN } from "../../src/protocol/forward.ts";
import { Mux, type MuxStream } from "../../src/lib/mux.ts";
import { waitFor } from "../helpers/wait.ts";

/** Two muxes joined by a link whose frames arrive asynchronously and which `cut()` drops, in flight too. */
function pair(window = 64 * 1024, hold = false) {
  const accepted: Array<{ s: MuxStream; got: ReturnType<typeof sink> }> = [];
  const violations: string[] = [];
  const opener = new Mux({ role: "opener", window, onViolation: (w) => violations.push(`opener: ${w}`) });
  const acceptor = new Mux({
    role: "acceptor",
    window,
    onStream: (s) => {
      accepted.push({ s, got: sink(s, hold) });
      s.accept();
    },
    onViolation: (w) => violations.push(`acceptor: ${w}`),
  });
  let generation = 0;
  const connect = (): void => {
    const g = ++generation;
    const deliver = (to: Mux, what: Uint8Array | string): void => {
      queueMicrotask(() => {
        if (g !== generation) return;
        if (typeof what === "string") {
          const msg = ForwardMessage.parse(JSON.parse(what));
          if (msg.type === "hello") to.hello(msg);
        } else expect(to.frame(what)).toBe(true);
      });
    };
    opener.attach({ send: (f) => deliver(acceptor, f.slice()), hello: (h) => deliver(acceptor, JSON.stringify(h)) });
    acceptor.attach({ send: (f) => deliver(opener, f.slice()), hello: (h) => deliver(opener, JSON.stringify(h)) });
  };
  const cut = (): void => {
    generation++;
    opener.detach();
    acceptor.detach();
  };
  connect();
  return { opener, acceptor, accepted, violations, connect, cut };
}

/** Collects a stream's bytes, consuming them at once unless `hold`. */
function sink(s: MuxStream, hold = false) {
  const chunks: Uint8Array[] = [];
  const state = { bytes: 0, ended: false, closed: undefined as string | null | undefined, held: 0 };
  s.onData = (d) => {
    chunks.push(d.slice());
    state.bytes += d.length;
    if (hold) state.held += d.length;
    else s.consumed(d.length);
  };
  s.onEnd = () => (state.ended = true);
  s.onClose = (e) => (state.closed = e);
  return { state, data: () => Buffer.concat(chunks), release: () => (s.consumed(state.held), (state.held = 0)) };
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

describe("mux", () => {
  test("a writer is held to the window until the reader writes out; every byte arrives in order", async () => {
    const { opener, accepted } = pair(64 * 1024, true);
    const s = opener.open(3000);
    const payload = random(1024 * 1024);
    let told = false;
    let offset = 0;
    // Write until told to wait.
    while (offset < payload.length && !told) {
      told = !s.write(payload.subarray(offset, offset + 16 * 1024));
      offset += 16 * 1024;
    }
    expect(told).toBe(true);
    expect(offset).toBeLessThanOrEqual(64 * 1024);
    const { s: peer, got } = await waitFor(() => accepted[0]);
    await waitFor(() => got.state.bytes === offset, { what: "the window's bytes" });
    // Held: nothing beyond the window was sent.
    expect(s.inFlight).toBeLessThanOrEqual(64 * 1024);
    let drained = false;
    s.onDrain = () => (drained = true);
    got.release();
    await waitFor(() => drained, { what: "onDrain" });
    // The rest, now consumed as it comes.
    peer.onData = (d) => {
      (got as { state: { bytes: number } }).state.bytes += d.length;
      all.push(d.slice());
      peer.consumed(d.length);
    };
    const all: Uint8Array[] = [];
    const rest = payload.subarray(offset);
    for (let i = 0; i < rest.length; i += 32 * 1024) {
      if (!s.write(rest.subarray(i, i + 32 * 1024))) await new Promise<void>((r) => (s.onDrain = r));
    }
    s.end();
    await waitFor(() => got.state.ended, { what: "the end" });
    expect(Buffer.concat([got.data(), ...all]).equals(Buffer.from(payload))).toBe(true);
  });

  test("half-close: one side ends, the other still sends; the stream finishes once both have", async () => {
    const { opener, accepted } = pair();
    const s = opener.open(80);
    const back = sink(s);
    s.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
    s.end();
    const { s: peer, got: req } = await waitFor(() => accepted[0]);
    await waitFor(() => req.state.ended, { what: "the request's end" });
    expect(req.data().toString()).toBe("GET / HTTP/1.0\r\n\r\n");
    expect(req.state.closed).toBeUndefined();
    peer.write(new TextEncoder().encode("HTTP/1.0 200 OK\r\n\r\nhello"));
    peer.end();
    await waitFor(() => back.state.closed === null && req.state.closed === null, { what: "both to finish" });
    expect(back.data().toString()).toBe("HTTP/1.0 200 OK\r\n\r\nhello");
    expect(opener.streams.size).toBe(0);
  });

  test("a link cut in the middle of a transfer resumes: every byte arrives once, in order, both ways", async () => {
    const p = pair(128 * 1024);
    const s = p.opener.open(9000);
    const back = sink(s);
    const payload = random(3 * 1024 * 1024);
    s.write(payload.subarray(0, 1));
    const { s: peer, got } = await waitFor(() => p.accepted[0]);
    let sent = 1;
    let cuts = 0;
    while (sent < payload.length) {
      const n = Math.min(48 * 1024, payload.length - sent);
      const ok = s.write(payload.subarray(sent, sent + n));
      peer.write(payload.subarray(sent, sent + n));
      sent += n;
      if (sent > (cuts + 1) * 700 * 1024 && cuts < 3) {
        p.cut();
        cuts++;
        await Bun.sleep(0);
        p.connect();
      }
      if (!ok) await new Promise<void>((r) => (s.onDrain = r));
      await waitFor(() => peer.written - peer.acked < 128 * 1024, { what: "the peer's window" });
    }
    s.end();
    peer.end();
    await waitFor(() => got.state.ended && back.state.ended, { timeoutMs: 20_000, what: "both ends" });
    expect(cuts).toBe(3);
    expect(got.data().equals(Buffer.from(payload))).toBe(true);
    expect(back.data().equals(Buffer.from(payload.subarray(1)))).toBe(true);
    await waitFor(() => p.opener.streams.size === 0 && p.acceptor.streams.size === 0, { what: "both to forget the stream" });
    expect(p.violations).toEqual([]);
  });

  test("a stream the other side lost is reset when the link comes back", async () => {
    const p = pair();
    const s = p.opener.open(3000);
    const back = sink(s);
    s.write(new Uint8Array([1]));
    await waitFor(() => p.accepted[0]);
    p.cut();
    // The acceptor forgets everything (an agent that restarted).
    for (const st of [...p.acceptor.streams.values()]) p.acceptor.remove(st, "gone");
    p.connect();
    await waitFor(() => typeof back.state.closed === "string", { what: "the reset" });
    expect(back.state.closed).toContain("lost");
  });

  test("garbage is refused: unknown frames, data beyond the window, a stream opened twice, ids never opened", async () => {
    const p = pair(1024);
    await waitFor(() => p.opener.ready && p.acceptor.ready);
    expect(p.acceptor.frame(new Uint8Array([9, 0, 0, 0, 1]))).toBe(false);
    expect(p.acceptor.frame(new Uint8Array([MUX_OPEN, 0, 0, 0, 0, 0, 80]))).toBe(false);
    expect(p.acceptor.frame(new Uint8Array(2))).toBe(false);
    expect(p.acceptor.frame(encodeMuxFrame({ kind: MUX_DATA, id: 77, data: new Uint8Array(1) }))).toBe(true);
    expect(p.violations.some((v) => v.includes("never opened"))).toBe(true);
    p.acceptor.frame(encodeMuxFrame({ kind: MUX_OPEN, id: 5, port: 80 }));
    p.acceptor.frame(encodeMuxFrame({ kind: MUX_OPEN, id: 5, port: 80 }));
    expect(p.violations.some((v) => v.includes("opened twice"))).toBe(true);
    const st = p.acceptor.streams.get(5) as MuxStream;
    let closed: string | null | undefined;
    st.onClose = (e) => (closed = e);
    p.acceptor.frame(encodeMuxFrame({ kind: MUX_DATA, id: 5, data: new Uint8Array(2048) }));
    expect(closed).toContain("window");
    expect(p.acceptor.streams.has(5)).toBe(false);
  });
});
