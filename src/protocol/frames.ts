/**
 * Binary frames: PTY bytes with the stream offset of their first byte.
 *
 * agent → server:  [kind=1][u32 client id, 0 = every client][u64 offset][bytes]
 * server → client: [kind=1][u64 offset][bytes]
 * client → server → agent: raw input bytes, no header (input has no offset to keep).
 */
export const FRAME_OUTPUT = 1;
/** Sync-back file bytes: agent → server [kind=2][u32 client id][u32 transfer][bytes]; server → client [kind=2][u32 transfer][bytes]. */
export const FRAME_SYNC = 2;
const AGENT_HEADER = 13;
const CLIENT_HEADER = 9;

export interface OutputFrame {
  /** Client the bytes are for (a replay); 0 for live output every client gets. */
  clientId: number;
  offset: number;
  data: Uint8Array;
}

export function encodeAgentOutput(clientId: number, offset: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(AGENT_HEADER + data.length);
  const view = new DataView(out.buffer);
  out[0] = FRAME_OUTPUT;
  view.setUint32(1, clientId);
  view.setBigUint64(5, BigInt(offset));
  out.set(data, AGENT_HEADER);
  return out;
}

export function decodeAgentOutput(frame: Uint8Array): OutputFrame | null {
  if (frame.length < AGENT_HEADER || frame[0] !== FRAME_OUTPUT) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return {
    clientId: view.getUint32(1),
    offset: Number(view.getBigUint64(5)),
    data: frame.subarray(AGENT_HEADER),
  };
}

/**
 * The client's copy of an agent output frame, without copying: the client header is the agent
 * header minus the client id, so the frame is re-headed in place (byte 4, the client id's last
 * byte, becomes the kind) and the view from there on is sent. The agent frame is not usable after.
 */
export function agentOutputToClient(frame: Uint8Array): Uint8Array {
  frame[4] = FRAME_OUTPUT;
  return frame.subarray(4);
}

export function decodeClientOutput(frame: Uint8Array): { offset: number; data: Uint8Array } | null {
  if (frame.length < CLIENT_HEADER || frame[0] !== FRAME_OUTPUT) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { offset: Number(view.getBigUint64(1)), data: frame.subarray(CLIENT_HEADER) };
}

export function encodeAgentSync(clientId: number, transfer: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + data.length);
  const view = new DataView(out.buffer);
  out[0] = FRAME_SYNC;
  view.setUint32(1, clientId);
  view.setUint32(5, transfer);
  out.set(data, 9);
  return out;
}

export function decodeAgentSync(frame: Uint8Array): { clientId: number; transfer: number; data: Uint8Array } | null {
  if (frame.length < 9 || frame[0] !== FRAME_SYNC) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { clientId: view.getUint32(1), transfer: view.getUint32(5), data: frame.subarray(9) };
}

/** The server's copy for the client: the agent frame minus the client id, re-headed in place (as output). */
export function agentSyncToClient(frame: Uint8Array): Uint8Array {
  frame[4] = FRAME_SYNC;
  return frame.subarray(4);
}

export function decodeClientSync(frame: Uint8Array): { transfer: number; data: Uint8Array } | null {
  if (frame.length < 5 || frame[0] !== FRAME_SYNC) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  return { transfer: view.getUint32(1), data: frame.subarray(5) };
}
