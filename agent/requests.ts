/**
 * Requests the agent makes of the server over the link (where to put a save, whether it was
 * stored), matched with their answers by answer type and id. A request fails when the server does
 * not answer in time, or at once when the link drops: its answer could never arrive on a new link.
 */
import type { AgentToServer, ServerToAgent } from "../src/protocol/index.ts";

/** The server's messages that answer a request. */
export type Answer = Extract<ServerToAgent, { type: "save_target" | "save_result" }>;
export type AnswerOf<K extends Answer["type"]> = Extract<Answer, { type: K }>;

const DEFAULT_TIMEOUT_MS = 60_000;

interface Pending {
  answer(msg: Answer): void;
  fail(err: Error): void;
}

export class Requests {
  private readonly waiting = new Map<string, Pending>();

  constructor(
    private readonly opts: {
      /** Puts a message on the link; false when the link is down. */
      send(msg: AgentToServer): boolean;
      /** How long the server has to answer (default 60 s). */
      timeoutMs?: number;
    },
  ) {}

  /** Requests still waiting for their answer. */
  get pending(): number {
    return this.waiting.size;
  }

  /** Sends `msg` and resolves with the `answer` message carrying the same `id`. */
  ask<K extends Answer["type"]>(msg: AgentToServer, answer: K, id: string): Promise<AnswerOf<K>> {
    const key = `${answer}:${id}`;
    return new Promise<AnswerOf<K>>((resolve, reject) => {
      if (this.waiting.has(key)) {
        reject(new Error(`a request for ${key} is already waiting`));
        return;
      }
      const settle = (): void => {
        clearTimeout(timer);
        this.waiting.delete(key);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new Error("the server did not answer in time"));
      }, this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      this.waiting.set(key, {
        answer: (m) => {
          settle();
          resolve(m as AnswerOf<K>);
        },
        fail: (err) => {
          settle();
          reject(err);
        },
      });
      if (!this.opts.send(msg)) this.waiting.get(key)?.fail(new Error("not connected to the server"));
    });
  }

  /** Hands an answer to its request; false when nothing waits for it (late, or never asked). */
  answer(msg: Answer): boolean {
    const pending = this.waiting.get(`${msg.type}:${msg.id}`);
    pending?.answer(msg);
    return pending !== undefined;
  }

  /** Fails every waiting request (the link dropped). */
  failAll(reason: string): void {
    for (const pending of [...this.waiting.values()]) pending.fail(new Error(reason));
  }
}
