/**
 * A stand-in for an ntfy server on loopback: `POST /<topic>` publishes a message (its body; the
 * `Title`, `Tags`, `Click` and `Actions` headers as ntfy documents them) and answers the message as
 * JSON. It records every request; `failNext` makes that many answer 503 first (a retry test).
 */
export interface NtfyMessage {
  topic: string;
  headers: Record<string, string>;
  body: string;
  status: number;
}

export interface NtfyStandIn {
  url: string;
  received: NtfyMessage[];
  failNext: number;
  stop(): void;
}

/** The http actions of an ntfy `Actions` header (`http, Label, URL, method=POST, clear=true; …`). */
export function ntfyActions(header: string): Array<{ label: string; url: string; method: string }> {
  return header.split(";").map((a) => {
    const [kind, label, url, ...params] = a.split(",").map((p) => p.trim());
    if (kind !== "http" || !label || !url) throw new Error(`not an http action: ${a}`);
    const method = params.find((p) => p.startsWith("method="))?.slice(7) ?? "POST";
    return { label, url, method };
  });
}

export function startNtfyStandIn(): NtfyStandIn {
  const state: NtfyStandIn = { url: "", received: [], failNext: 0, stop: () => server.stop(true) };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const topic = new URL(req.url).pathname.slice(1);
      const body = await req.text();
      const status = req.method !== "POST" || !/^[\w-]{1,64}$/.test(topic) ? 404 : state.failNext > 0 ? 503 : 200;
      if (status === 503) state.failNext--;
      state.received.push({ topic, headers: Object.fromEntries(req.headers), body, status });
      if (status !== 200) return Response.json({ code: status * 100, http: status, error: "unavailable" }, { status });
      return Response.json({ id: crypto.randomUUID().slice(0, 12), time: Math.floor(Date.now() / 1000), event: "message", topic, message: body, title: req.headers.get("title") ?? undefined });
    },
  });
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}
