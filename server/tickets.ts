/**
 * Signed, expiring tickets: a URL segment that carries what it grants (a JSON payload with its
 * expiry `e`, in seconds since the epoch) and an HMAC over it, so the holder needs no other
 * credential. Saves hand them out for `/v1/vault/<ticket>/…`, the disk blob store for
 * `/v1/blobs/<ticket>`.
 */
import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import type { z } from "zod";
import { CattyError } from "../src/protocol/errors.ts";

/** A ticket-signing key derived from the master key (never the master key itself). */
export function ticketKey(master: Buffer): Buffer {
  return Buffer.from(hkdfSync("sha256", master, Buffer.alloc(0), "catty vault tickets v1", 32));
}

const sign = (key: Buffer | string, encoded: string): string => createHmac("sha256", key).update(encoded).digest("base64url");

/** A ticket for `payload`, valid for `ttlSec` seconds from `nowMs`. */
export function signTicket(key: Buffer | string, payload: Record<string, unknown>, ttlSec: number, nowMs = Date.now()): string {
  // Rounded up: a ticket lives at least as long as asked, also for short lives.
  const encoded = Buffer.from(JSON.stringify({ ...payload, e: Math.ceil(nowMs / 1000 + ttlSec) })).toString("base64url");
  return `${encoded}.${sign(key, encoded)}`;
}

/**
 * What `ticket` grants; throws a `forbidden` CattyError ("This <noun> is malformed…") when it is
 * malformed, tampered with or expired.
 */
export function verifyTicket<T>(key: Buffer | string, ticket: string, schema: z.ZodType<T>, opts: { nowMs?: number; noun?: string } = {}): T {
  const nowMs = opts.nowMs ?? Date.now();
  const forbidden = (what: string): CattyError => new CattyError("forbidden", `This ${opts.noun ?? "link"} ${what}. Ask the server for a new one.`);
  const dot = ticket.indexOf(".");
  if (dot <= 0 || dot !== ticket.lastIndexOf(".")) throw forbidden("is malformed");
  const encoded = ticket.slice(0, dot);
  // Compare the encoded signatures, not decoded bytes: base64url decoding ignores stray bits.
  const given = Buffer.from(ticket.slice(dot + 1));
  const wanted = Buffer.from(sign(key, encoded));
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) throw forbidden("is not valid");
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(encoded, "base64url").toString("utf8"));
  } catch {
    throw forbidden("is malformed");
  }
  const expiry = (payload as { e?: unknown }).e;
  if (typeof expiry !== "number" || nowMs / 1000 >= expiry) throw forbidden("has expired");
  const parsed = schema.safeParse(payload);
  if (!parsed.success) throw forbidden("is malformed");
  return parsed.data;
}
