/**
 * Port forwards: many TCP streams over one WebSocket, like ssh channels or yamux.
 *
 * A forward link runs end to end between an *opener* (the CLI's `catty forward`) and an
 * *acceptor* (the session's agent), through the server, which pairs the CLI's link
 * (`/v1/sessions/<label>/forward?id=`) with a link the agent dials for it
 * (`/v1/agent/forward?id=`) and passes frames unchanged, checking each at its edge
 * (`decodeMuxFrame`, `ForwardMessage`). The pumping is `src/lib/mux.ts`.
 *
 * Binary frames, `[kind u8][stream u32][…]`, big-endian:
 *   OPEN    [1][id][port u16]          opener: connect stream `id` to the session's `port`
 *   OPENED  [2][id]                    acceptor: connected
 *   RESET   [3][id][reason utf-8]      either: the stream is gone (refused, aborted, broken rules)
 *   DATA    [4][id][bytes]             either: at most `MUX_MAX_DATA` bytes, within the peer's window
 *   ACK     [5][id][consumed u64][fin u8]  either: bytes written out so far (the sender may have
 *                                      `consumed + MUX_WINDOW` sent); fin 1 once the peer's FIN is taken
 *   FIN     [6][id]                    either: nothing more from me on this stream (half-close)
 *
 * Text frames (`ForwardMessage`): each side's `hello` when a link opens (what it holds of each
 * stream, so a link that dropped is resumed where the streams stand), pings and errors.
 */
import { z } from "zod";
import { ErrorBody } from "./errors.ts";

export const MUX_OPEN = 1;
export const MUX_OPENED = 2;
export const MUX_RESET = 3;
export const MUX_DATA = 4;
export const MUX_ACK = 5;
export const MUX_FIN = 6;

/** Bytes one stream may have in flight (sent, not yet written out by the peer). */
export const MUX_WINDOW = 1024 * 1024;
/** Bytes all streams of one link may have in flight together (bounds what the server buffers). */
export const MUX_LINK_WINDOW = 8 * 1024 * 1024;
/** Largest DATA payload. */
export const MUX_MAX_DATA = 64 * 1024;
/** Streams open at once on one forward. */
export const MUX_MAX_STREAMS = 1024;
const MAX_REASON = 256;

export const Port = z.number().int().min(1).max(65535);

/** A TCP port a session's program listens on, as the agent saw it ("3000 · node"). */
export const ListeningPort = z.object({ port: Port, name: z.string().max(64) });
export type ListeningPort = z.infer<typeof ListeningPort>;

/** What one side holds of a stream when a link opens. */
export const StreamState = z.object({
  id: z.number().int().min(1).max(0xffffffff),
  /** Bytes received from the peer (the peer sends again from here). */
  received: z.number().int().min(0),
  /** The peer's FIN was received. */
  fin: z.boolean(),
});
export type StreamState = z.infer<typeof StreamState>;

export const FORWARD_PROTOCOL = 1;

export const ForwardMessage = z.discriminatedUnion("type", [
  /** Either side, first on every link: the streams it holds (empty on a new forward). */
  z.object({
    type: z.literal("hello"),
    protocol: z.number().int(),
    streams: z.array(StreamState).max(MUX_MAX_STREAMS),
    /** Opener: the ports it forwards, for the server to list while it runs. */
    ports: z.array(Port).max(64).default([]),
  }),
  z.object({ type: z.literal("ping"), id: z.number() }),
  z.object({ type: z.literal("pong"), id: z.number() }),
  ErrorBody,
]);
export type ForwardMessage = z.infer<typeof ForwardMessage>;

/** A forward's id: random, chosen by the CLI, the same on every re-dial of one `catty forward`. */
export const ForwardId = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/);

export type MuxFrame =
  | { kind: typeof MUX_OPEN; id: number; port: number }
  | { kind: typeof MUX_OPENED; id: number }
  | { kind: typeof MUX_RESET; id: number; reason: string }
  | { kind: typeof MUX_DATA; id: number; data: Uint8Array }
  | { kind: typeof MUX_ACK; id: number; consumed: number; fin: boolean }
  | { kind: typeof MUX_FIN; id: number };

function head(kind: number, id: number, extra: number): { out: Uint8Array; view: DataView } {
  const out = new Uint8Array(5 + extra);
  const view = new DataView(out.buffer);
  out[0] = kind;
  view.setUint32(1, id);
  return { out, view };
}

export function encodeMuxFrame(f: MuxFrame): Uint8Array {
  switch (f.kind) {
    case MUX_OPEN: {
      const { out, view } = head(f.kind, f.id, 2);
      view.setUint16(5, f.port);
      return out;
    }
    case MUX_OPENED:
    case MUX_FIN:
      return head(f.kind, f.id, 0).out;
    case MUX_RESET: {
      const reason = new TextEncoder().encode(f.reason.slice(0, MAX_REASON));
      const { out } = head(f.kind, f.id, reason.length);
      out.set(reason, 5);
      return out;
    }
    case MUX_DATA: {
      const { out } = head(f.kind, f.id, f.data.length);
      out.set(f.data, 5);
      return out;
    }
    case MUX_ACK: {
      const { out, view } = head(f.kind, f.id, 9);
      view.setBigUint64(5, BigInt(f.consumed));
      out[13] = f.fin ? 1 : 0;
      return out;
    }
  }
}

/** One frame from the peer, checked; null when it is not a well-formed frame. */
export function decodeMuxFrame(frame: Uint8Array): MuxFrame | null {
  if (frame.length < 5) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const kind = frame[0];
  const id = view.getUint32(1);
  if (id === 0) return null;
  switch (kind) {
    case MUX_OPEN: {
      if (frame.length !== 7) return null;
      const port = view.getUint16(5);
      return port === 0 ? null : { kind, id, port };
    }
    case MUX_OPENED:
    case MUX_FIN:
      return frame.length === 5 ? { kind, id } : null;
    case MUX_RESET:
      if (frame.length > 5 + MAX_REASON * 4) return null;
      return { kind, id, reason: new TextDecoder().decode(frame.subarray(5)) };
    case MUX_DATA:
      if (frame.length === 5 || frame.length > 5 + MUX_MAX_DATA) return null;
      return { kind, id, data: frame.subarray(5) };
    case MUX_ACK: {
      if (frame.length !== 14 || (frame[13] !== 0 && frame[13] !== 1)) return null;
      const consumed = view.getBigUint64(5);
      if (consumed > BigInt(Number.MAX_SAFE_INTEGER)) return null;
      return { kind, id, consumed: Number(consumed), fin: frame[13] === 1 };
    }
    default:
      return null;
  }
}

/** `POST /v1/sessions/<label>/shares`: a link to one port that works signed out until it expires or is revoked. */
export const CreateShare = z.object({
  port: Port,
  /** How long it works; default a day, at most 30 days. */
  expiresInMs: z.number().int().min(60_000).max(30 * 86_400_000).default(86_400_000),
});
export type CreateShare = z.input<typeof CreateShare>;

/** A share link as listed (its token is shown once, when it is made). */
export const ShareInfo = z.object({
  id: z.string().max(64),
  port: Port,
  createdAt: z.string(),
  expiresAt: z.string(),
});
export type ShareInfo = z.infer<typeof ShareInfo>;

/** The answer to making one: the link itself. */
export const ShareCreated = ShareInfo.extend({ url: z.string().max(2000) });
export type ShareCreated = z.infer<typeof ShareCreated>;
