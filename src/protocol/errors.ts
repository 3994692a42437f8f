/**
 * The one error type that crosses process boundaries. Server, agent and CLI throw `CattyError`
 * with a code from the closed set below; on the wire it travels as `{ type: "error", code, message }`
 * and the server maps the code to an HTTP status in one table (`httpStatus`).
 */
import { z } from "zod";

export const ErrorCode = z.enum([
  "bad_request",
  "unauthorized",
  "forbidden",
  "not_found",
  "conflict",
  "too_large",
  "unavailable",
  "protocol_mismatch",
  "session_ended",
  "quota_exceeded",
  "too_many_requests",
  "internal",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** Error body of every non-2xx HTTP answer and of WebSocket `error` messages. */
export const ErrorBody = z.object({
  type: z.literal("error"),
  code: ErrorCode,
  message: z.string(),
  hint: z.string().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export class CattyError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.name = "CattyError";
    this.code = code;
    this.hint = hint;
  }
  toBody(): ErrorBody {
    return { type: "error", code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}) };
  }
  static from(body: ErrorBody): CattyError {
    return new CattyError(body.code, body.message, body.hint);
  }
}

/** The message of a Catty server's error answer, read from its body (null for anyone else's answer). */
export async function errorMessageOf(res: Response): Promise<string | null> {
  if (!/json/.test(res.headers.get("content-type") ?? "")) {
    await res.body?.cancel().catch(() => {});
    return null;
  }
  const parsed = ErrorBody.safeParse(await res.json().catch(() => null));
  return parsed.success ? parsed.data.message : null;
}

export const httpStatus: Record<ErrorCode, number> = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unavailable: 503,
  protocol_mismatch: 426,
  session_ended: 410,
  quota_exceeded: 402,
  too_many_requests: 429,
  internal: 500,
};
