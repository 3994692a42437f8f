/**
 * WebSocket close codes of both links (client ↔ server, agent ↔ server). The server closes with
 * these; the CLI, the browser and the agent act on them. 1000 is a normal close.
 */
export const CLOSE = {
  /** Client: another interactive client took the session over. */
  takeover: 4001,
  /** Client or agent: the session has ended; do not reconnect. */
  ended: 4002,
  /** Either link: the peer speaks another protocol version, or broke the protocol (see the reason). */
  protocol: 4003,
  /** Agent: a newer link of the same agent replaced this one. */
  replaced: 4004,
  /** Either side: the peer went silent (no pong) and the link was given up. */
  deadPeer: 4000,
  /** Either link: too many malformed frames in a row. */
  malformed: 4005,
  /** Either link: this server is shutting down; dial again (another replica, or this one once back). */
  restart: 1012,
} as const;
export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];
