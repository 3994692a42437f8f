/**
 * A stand-in for the Anthropic Messages API on loopback, speaking its documented shapes:
 * `POST /v1/messages` as JSON or as server-sent events (`message_start`, `content_block_start`,
 * `ping`, `content_block_delta`…, `content_block_stop`, `message_delta` with the output usage,
 * `message_stop`), `POST /v1/messages/count_tokens` and `GET /v1/models`, with the
 * `anthropic-ratelimit-*` headers the API sends. It records every request (method, path, query,
 * headers, body), and a test may hold a stream after its first event (`hold`) to see that what was
 * sent arrives before the rest exists, or before its final counts (`holdEnd`) to cut it there.
 */
export interface RecordedRequest {
  method: string;
  path: string;
  search: string;
  headers: Record<string, string>;
  body: string;
}

export interface AnthropicStandIn {
  url: string;
  requests: RecordedRequest[];
  /** What the next replies say, split into this many deltas, with `gapMs` between them (default 0). */
  reply: { text: string; deltas: number; gapMs?: number };
  usage: { input_tokens: number; output_tokens: number; cache_creation_input_tokens: number; cache_read_input_tokens: number };
  /** While set, a stream stops after `message_start` until `release()`. */
  hold: boolean;
  /** While set, a stream stops after its last content block, before `message_delta` (its output count), until `release()`. */
  holdEnd: boolean;
  /** Lets every held stream go on. */
  release(): void;
  /**
   * While set, a request with tools whose last user turn is text containing `trigger` (not a tool's
   * result) is answered with this tool use; a turn of tool results is answered "Tool result: …"
   * with the result's text (the error flag as "(error)").
   */
  toolUse: { trigger: string; name: string; input: Record<string, unknown> } | null;
  /** Makes the next request fail with this status and Anthropic error type. */
  failNext: { status: number; type: string; message: string } | null;
  stop(): void;
}

export function startAnthropicStandIn(opts: { port?: number; record?: boolean } = {}): AnthropicStandIn {
  const holding: Array<() => void> = [];
  const holdHere = (): Promise<void> => new Promise((r) => holding.push(r));
  const state: AnthropicStandIn = {
    url: "",
    requests: [],
    reply: { text: "Hello from the stand-in.", deltas: 3 },
    usage: { input_tokens: 120, output_tokens: 0, cache_creation_input_tokens: 30, cache_read_input_tokens: 7 },
    hold: false,
    holdEnd: false,
    release: () => {
      for (const r of holding.splice(0)) r();
    },
    toolUse: null,
    failNext: null,
    stop: () => server.stop(true),
  };
  const enc = new TextEncoder();
  const rateHeaders = { "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49", "request-id": "req_standin" };

  const server = Bun.serve({
    port: opts.port ?? 0,
    hostname: "127.0.0.1",
    idleTimeout: 60,
    async fetch(req) {
      const url = new URL(req.url);
      const body = await req.text();
      if (opts.record !== false) state.requests.push({ method: req.method, path: url.pathname, search: url.search, headers: Object.fromEntries(req.headers), body });
      if (state.failNext) {
        const f = state.failNext;
        state.failNext = null;
        return Response.json({ type: "error", error: { type: f.type, message: f.message } }, { status: f.status, headers: { ...rateHeaders, "retry-after": "7" } });
      }
      if (req.method === "GET" && url.pathname === "/v1/models") {
        return Response.json({ data: [{ type: "model", id: "claude-standin", display_name: "Stand-in" }], has_more: false }, { headers: rateHeaders });
      }
      if (req.method === "POST" && url.pathname === "/v1/messages/count_tokens") return Response.json({ input_tokens: 42 }, { headers: rateHeaders });
      if (req.method !== "POST" || url.pathname !== "/v1/messages") return Response.json({ type: "error", error: { type: "not_found_error", message: "Not found" } }, { status: 404 });

      let request: { stream?: boolean; model?: string; tools?: unknown[]; messages?: Array<{ role: string; content: unknown }> } = {};
      try {
        request = JSON.parse(body);
      } catch {
        return Response.json({ type: "error", error: { type: "invalid_request_error", message: "body is not JSON" } }, { status: 400 });
      }
      const model = request.model ?? "claude-standin";
      const turn = toolTurn(request, state.toolUse);
      const text = turn?.text ?? state.reply.text;
      const outputTokens = Math.max(1, Math.ceil(text.length / 4));
      const usage = { ...state.usage };
      const message = { id: "msg_standin", type: "message", role: "assistant", model, content: [] as unknown[], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } };
      if (!request.stream) {
        return Response.json(
          { ...message, content: [{ type: "text", text }], stop_reason: "end_turn", usage: { ...usage, output_tokens: outputTokens } },
          { headers: rateHeaders },
        );
      }
      const held = state.hold ? holdHere() : null;
      const heldEnd = state.holdEnd ? holdHere() : null;
      const parts: string[] = [];
      const size = Math.ceil(text.length / state.reply.deltas);
      for (let i = 0; i < text.length; i += size) parts.push(text.slice(i, i + size));
      const event = (type: string, data: object): Uint8Array => enc.encode(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
      const stream = new ReadableStream<Uint8Array>({
        async start(ctrl) {
          ctrl.enqueue(event("message_start", { message }));
          await held;
          if (turn?.toolUse) {
            const use = turn.toolUse;
            ctrl.enqueue(event("content_block_start", { index: 0, content_block: { type: "tool_use", id: use.id, name: use.name, input: {} } }));
            ctrl.enqueue(event("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: JSON.stringify(use.input) } }));
            ctrl.enqueue(event("content_block_stop", { index: 0 }));
            ctrl.enqueue(event("message_delta", { delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: outputTokens } }));
            ctrl.enqueue(event("message_stop", {}));
            ctrl.close();
            return;
          }
          ctrl.enqueue(event("content_block_start", { index: 0, content_block: { type: "text", text: "" } }));
          ctrl.enqueue(event("ping", {}));
          for (const p of parts) {
            if (state.reply.gapMs) await Bun.sleep(state.reply.gapMs);
            ctrl.enqueue(event("content_block_delta", { index: 0, delta: { type: "text_delta", text: p } }));
          }
          ctrl.enqueue(event("content_block_stop", { index: 0 }));
          await heldEnd;
          ctrl.enqueue(event("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: outputTokens } }));
          ctrl.enqueue(event("message_stop", {}));
          ctrl.close();
        },
      });
      return new Response(stream, { headers: { ...rateHeaders, "content-type": "text/event-stream", "cache-control": "no-cache" } });
    },
  });
  state.url = `http://127.0.0.1:${server.port}`;
  return state;
}

let toolUses = 0;
/** How many prompts with each trigger had their tool use. */
const usedPrompts = new Map<string, number>();

/** The stand-in's turn when it uses tools (`AnthropicStandIn.toolUse`): a tool use, or the text answering a tool's result. */
function toolTurn(
  request: { tools?: unknown[]; messages?: Array<{ role: string; content: unknown }> },
  toolUse: AnthropicStandIn["toolUse"],
): { toolUse?: { id: string; name: string; input: Record<string, unknown> }; text?: string } | null {
  if (!toolUse || !request.tools?.length) return null;
  // (Claude Code may put a system message after the user's turn, and a new prompt in the same turn as the last tool's result.)
  const last = request.messages?.findLast((m) => m.role === "user" || m.role === "assistant");
  if (last?.role !== "user") return null;
  type Block = { type: string; text?: string; content?: unknown; is_error?: boolean };
  const blocksOf = (m: { content: unknown }): Block[] => (Array.isArray(m.content) ? m.content : [{ type: "text", text: String(m.content) }]) as Block[];
  // A prompt with the trigger (counted over the conversation) that has not had its tool use yet asks for one; else the last tool result is answered.
  const prompts = (request.messages ?? []).filter((m) => m.role === "user").flatMap(blocksOf).filter((b) => b.type === "text" && b.text?.includes(toolUse.trigger)).length;
  const result = blocksOf(last).findLast((b) => b.type === "tool_result");
  if (prompts > (usedPrompts.get(toolUse.trigger) ?? 0)) {
    usedPrompts.set(toolUse.trigger, prompts);
  } else if (result) {
    const content = typeof result.content === "string" ? result.content : JSON.stringify(result.content);
    return { text: `Tool result${result.is_error ? " (error)" : ""}: ${content}` };
  } else return null;
  return { toolUse: { id: `toolu_standin_${++toolUses}`, name: toolUse.name, input: toolUse.input } };
}

/** Run as a process of its own (the proxy benchmark): `bun test/helpers/anthropic.ts PORT DELTAS GAP_MS`. */
if (import.meta.main) {
  const [port, deltas, gapMs] = process.argv.slice(2).map(Number);
  const api = startAnthropicStandIn({ port: port ?? 0, record: false });
  api.reply = { text: "x".repeat(400), deltas: deltas || 20, gapMs: gapMs || 0 };
  console.log(api.url);
}
