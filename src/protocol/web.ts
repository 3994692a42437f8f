/**
 * The dashboard's own HTTP shapes: signing a browser in (`/v1/web/login`, `/v1/web/me`), what the
 * page needs to start a session (`/v1/web/config`), attach tickets, and a device login shown for
 * approval. The server's routes answer with them; the browser parses every answer with them.
 */
import { z } from "zod";

/** `POST /v1/web/login`, `GET /v1/web/me`: who is signed in, and the CSRF token for changes (null: signed in by a bearer token). */
export const WebUser = z.object({ user: z.string(), csrf: z.string().nullable() });
export type WebUser = z.infer<typeof WebUser>;

/** `GET /v1/web/config`: the regions New session offers, by id and name. */
export const WebConfig = z.object({ regions: z.array(z.object({ id: z.string(), name: z.string() })) });
export type WebConfig = z.infer<typeof WebConfig>;

/** `POST /v1/sessions/<label>/ticket`: a one-use ticket for one attach WebSocket (browsers cannot set headers). */
export const AttachTicket = z.object({ ticket: z.string(), expiresIn: z.number() });
export type AttachTicket = z.infer<typeof AttachTicket>;

/** `GET /v1/device/<code>`: a `catty login` waiting for approval, and who asked for it. */
export const DeviceRequest = z.object({
  userCode: z.string(),
  createdAt: z.string(),
  expiresAt: z.string(),
  requester: z.object({ address: z.string().nullable(), userAgent: z.string().nullable() }),
});
export type DeviceRequest = z.infer<typeof DeviceRequest>;
