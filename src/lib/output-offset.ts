/**
 * A client's side of the output stream's offsets (the agent numbers every output byte): what of
 * an output frame the client does not have yet. The CLI's session link and the dashboard's attach
 * link both keep the end offset of what they hold, send it in `hello`, and pass every frame
 * through here, so a re-attach shows each byte exactly once.
 */

export interface NewOutput {
  /** The bytes past what the client holds. */
  data: Uint8Array;
  /** The offset after them: what the client holds from now on. */
  end: number;
  /** Bytes are missing before them (should not happen): the client asks for the screen. */
  gap: boolean;
}

/**
 * The part of an output frame (`offset`: of its first byte) past `have`, the end offset the client
 * holds (null: it holds nothing, so all of it); null when the client has all of it already.
 */
export function newOutput(have: number | null, offset: number, data: Uint8Array): NewOutput | null {
  const end = offset + data.length;
  if (have === null) return { data, end, gap: false };
  if (end <= have) return null;
  if (offset < have) return { data: data.subarray(have - offset), end, gap: false };
  return { data, end, gap: offset > have };
}
