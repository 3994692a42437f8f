/**
 * Several `catty-server` replicas on one database and one blob store. Each replica records itself
 * in the store (`replicas`: its id, the internal URL the others reach it at, a heartbeat every
 * `beatMs`); one not seen for `deadMs` is dead. The replica whose relay holds a session's agent
 * link is its relay replica (`sessions.relay_replica`, set when the agent says hello): it serves
 * the session — clients that land elsewhere are forwarded to it, stops and handed files go to it,
 * and it watches the session's limits. Work that belongs to no live replica (sessions whose relay
 * replica died, the storage sweep) is done by the holder of a lease in the store, so it is done
 * once across replicas.
 *
 * Replicas call each other on `/v1/internal/…` (routes/internal.ts), each request signed with the
 * internal key every replica shares (`CATTY_INTERNAL_KEY`, a key of its own: holding the master
 * key, or a user's token, signs nothing). `X-Catty-Internal` carries an expiry, a random nonce and
 * an HMAC over the method, the path with its query, a hash of the body, the target replica's id,
 * the expiry and the nonce: a signature is good for one request, to one replica (ids are new on
 * every start), once, within a minute. Internal URLs belong on the cluster's private network, and
 * `CATTY_INTERNAL_PORT` serves `/v1/internal` on a listener of its own.
 *
 * A replica starting checks that its internal URL reaches it (before it records itself) and that
 * the live replicas keep saves in the same storage, run sessions in the same place and share the
 * master key (topology.ts); if not, it does not start.
 *
 * On SQLite the store is this process's alone (the data dir is locked), so the replica is `solo`:
 * every lease is its own at once, and no other replica is alive.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Log } from "../src/lib/log.ts";
import type { ReplicaRow, Store } from "./store/types.ts";
import { ReplicaAbout, TopologyError, topologyProblem } from "./topology.ts";

export interface ReplicasOptions {
  store: Store;
  log: Log;
  /** The key internal requests are signed with (`CATTY_INTERNAL_KEY`); null on a solo replica, which calls no other. */
  key: Buffer | null;
  /** This replica's internal URL (known once it listens). */
  url(): string;
  /** The store is this process's alone (SQLite). */
  solo: boolean;
  /** Heartbeat period (default 2 s). */
  beatMs?: number;
  /** A replica not seen for this long is dead (default 10 s); also the lifetime of a lease. */
  deadMs?: number;
  /** What this replica says of itself to the others (see topology.ts). */
  about?: Omit<ReplicaAbout, "id">;
}

/** The header internal requests are signed in. */
export const INTERNAL_HEADER = "x-catty-internal";
/** How long a signed internal request is valid. */
const SIGNATURE_TTL_SEC = 60;
/** Nonces seen within their signatures' lifetime; past this many, internal requests are refused until some expire. */
const MAX_NONCES = 100_000;
/** The lease of the work no live replica owns (orphaned sessions, the storage sweep). */
export const DUTIES_LEASE = "duties";

export class Replicas {
  /** This process's replica id (new on every start). */
  readonly id: string = crypto.randomUUID();
  readonly solo: boolean;
  readonly beatMs: number;
  readonly deadMs: number;
  private readonly signKey: Buffer | null;
  /** Nonces of signatures this replica took, with their expiry (s), oldest first: each is good once. */
  private readonly nonces = new Map<string, number>();
  private timer: Timer | null = null;
  private beating: Promise<void> | null = null;
  private cached: { at: number; rows: ReplicaRow[] } | null = null;
  private readonly held = new Set<string>();
  /** When each replica id last missed from the list (see `alive`). */
  private readonly missed = new Map<string, number>();
  private closed = false;

  constructor(private readonly opts: ReplicasOptions) {
    this.solo = opts.solo;
    this.beatMs = opts.beatMs ?? 2_000;
    this.deadMs = opts.deadMs ?? 10_000;
    if (!opts.solo && !opts.key) throw new Error("replicas sharing a database sign their calls to each other: set CATTY_INTERNAL_KEY (`openssl rand -hex 32`), the same on every replica");
    this.signKey = opts.key;
  }

  /** Records this replica and keeps its heartbeat. */
  async start(): Promise<void> {
    if (this.solo) return;
    await this.beat();
    this.timer = setInterval(() => {
      this.beating = this.beat().catch((err: unknown) => this.opts.log.warn("replica heartbeat failed", { err }));
    }, this.beatMs);
  }

  private async beat(): Promise<void> {
    if (this.closed) return;
    await this.opts.store.beatReplica({ id: this.id, url: this.opts.url() }, new Date().toISOString());
    // Leases this replica holds are renewed with its heartbeat.
    for (const name of this.held) await this.lease(name);
  }

  /** Leaves: no more heartbeat, the row and the leases go, so the others take over at once. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // A heartbeat under way would write the row back after it is removed.
    await this.beating;
    const { store } = this.opts;
    for (const name of this.held) await store.releaseLease(name, this.id).catch(() => {});
    this.held.clear();
    await store.removeReplica(this.id).catch(() => {});
  }

  /**
   * The live replicas, this one included (read at most once a second, or every `maxAgeMs`). Of
   * replicas at one URL only the one started last counts: an earlier one is a process that died
   * there (its row not yet stale), and whatever is called at that URL is the newer one.
   */
  async live(maxAgeMs = 1_000): Promise<ReplicaRow[]> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < maxAgeMs) return this.cached.rows;
    const latest = new Map<string, ReplicaRow>();
    for (const r of await this.opts.store.replicas(new Date(now - this.deadMs).toISOString())) {
      const seen = latest.get(r.url);
      if (!seen || r.startedAt > seen.startedAt || (r.startedAt === seen.startedAt && r.id === this.id)) latest.set(r.url, r);
    }
    const rows = [...latest.values()];
    this.cached = { at: now, rows };
    return rows;
  }

  /** The replica `id` if it is alive (this one always is); null otherwise. */
  async alive(id: string | null): Promise<ReplicaRow | null> {
    if (id === null) return null;
    if (id === this.id) return { id, url: this.opts.url(), startedAt: "", seenAt: new Date().toISOString() };
    if (this.solo) return null;
    const found = (await this.live()).find((r) => r.id === id);
    if (found) return found;
    // Not in the list: it may have just started, so the list is read again — for a given id at
    // most once a second (a dead replica is asked about until its sessions move).
    const now = Date.now();
    if (now - (this.missed.get(id) ?? 0) < 1_000) return null;
    if (this.missed.size > 1_000) this.missed.clear();
    this.missed.set(id, now);
    return (await this.live(0)).find((r) => r.id === id) ?? null;
  }

  /** What this replica says of itself to the others (`GET /v1/internal/replica`). */
  get about(): ReplicaAbout {
    return { id: this.id, storage: "", machines: "", masterKey: "", ...this.opts.about };
  }

  /**
   * Once this replica listens, before it is registered (a wrong URL is never recorded): that its
   * internal URL reaches it. Throws a `TopologyError` saying what to change.
   */
  async checkUrl(): Promise<void> {
    if (this.solo) return;
    const url = this.opts.url();
    const self: ReplicaRow = { id: this.id, url, startedAt: "", seenAt: "" };
    const mine = await this.ask(self).catch((err: unknown) => {
      throw new TopologyError(
        `this replica's internal URL ${url} (CATTY_INTERNAL_URL) does not reach it (${(err as Error).message}), and the other replicas call it there: ` +
          "set CATTY_INTERNAL_URL to an address of this replica on the replicas' private network, on the port that serves /v1/internal (--port, or CATTY_INTERNAL_PORT).",
      );
    });
    if (mine.kind === "status" && mine.status === 404) {
      throw new TopologyError(
        `this replica's internal URL ${url} (CATTY_INTERNAL_URL) does not serve /v1/internal (HTTP 404): point it at the port that does (CATTY_INTERNAL_PORT when it is set, else --port).`,
      );
    }
    if (mine.kind !== "about" || mine.about.id !== this.id) {
      throw new TopologyError(
        `this replica's internal URL ${url} (CATTY_INTERNAL_URL) reaches another server, not this replica (${mine.kind === "about" ? "another replica answered" : `HTTP ${mine.status}`}): ` +
          "give each replica its own CATTY_INTERNAL_URL, the address it listens on.",
      );
    }
  }

  /**
   * Once this replica is registered (so that one starting at the same time sees it too): that
   * every other live replica that answers could serve alongside it (topology.ts). Throws a
   * `TopologyError` saying what to change. A replica that does not answer may have just died (its
   * row stays live for `deadMs`): it is passed over.
   */
  async checkTopology(): Promise<void> {
    if (this.solo) return;
    const url = this.opts.url();
    const mine = this.about;
    // A row at this replica's own URL is a process that died here (this one answered there).
    for (const r of (await this.live(0)).filter((row) => row.id !== this.id && row.url !== url)) {
      const theirs = await this.ask(r).catch((err: unknown) => {
        this.opts.log.warn("another live replica did not answer (it may have just stopped)", { replica: r.id, url: r.url, err });
        return null;
      });
      if (theirs === null) continue;
      if (theirs.kind === "status") {
        // A replica from before this check has no such route: nothing to compare.
        if (theirs.status === 404) continue;
        throw new TopologyError(
          `the replica at ${r.url} refused this replica's signed call (HTTP ${theirs.status}): give every replica the same CATTY_INTERNAL_KEY, and each its own CATTY_INTERNAL_URL.`,
        );
      }
      const problem = topologyProblem(mine, theirs.about, r.url);
      if (problem) throw new TopologyError(problem);
    }
  }

  /** `GET /v1/internal/replica` of `to`: what it says of itself, or the HTTP status it answered with. */
  private async ask(to: ReplicaRow): Promise<{ kind: "about"; about: ReplicaAbout } | { kind: "status"; status: number }> {
    const res = await this.call(to, "GET", "/v1/internal/replica", undefined, { timeoutMs: 5_000, retries: 1 });
    const about = res.ok ? ReplicaAbout.safeParse(await res.json().catch(() => null)) : null;
    if (!res.ok) await res.body?.cancel();
    return about?.success ? { kind: "about", about: about.data } : { kind: "status", status: res.status };
  }

  /** The other live replicas. */
  async others(): Promise<ReplicaRow[]> {
    if (this.solo) return [];
    return (await this.live()).filter((r) => r.id !== this.id);
  }

  /** Takes or renews the lease `name` for `deadMs`; true while this replica holds it. */
  async lease(name: string): Promise<boolean> {
    if (this.solo) return true;
    const now = Date.now();
    const ok = await this.opts.store.takeLease(name, this.id, new Date(now + this.deadMs).toISOString(), new Date(now).toISOString());
    if (ok) this.held.add(name);
    else this.held.delete(name);
    return ok;
  }

  /** Gives up the lease `name`. */
  async release(name: string): Promise<void> {
    this.held.delete(name);
    if (!this.solo) await this.opts.store.releaseLease(name, this.id);
  }

  // ── internal requests ───────────────────────────────────────────────────────────────────────

  /**
   * The `X-Catty-Internal` value for one request of `method` to `path` (with its query) carrying
   * `body`, to the replica `to` (its id): `<expiry>.<nonce>.<mac>`.
   */
  sign(to: string, method: string, path: string, body: Uint8Array | string = "", nowMs = Date.now()): string {
    const expiry = Math.ceil(nowMs / 1000) + SIGNATURE_TTL_SEC;
    const nonce = randomBytes(16).toString("base64url");
    return `${expiry}.${nonce}.${this.mac(to, method, path, body, expiry, nonce)}`;
  }

  /**
   * Whether `header` signs this request (`method`, `path` with its query, `body`) to this replica,
   * has not expired and was not used before; a signature that holds is used up.
   */
  verify(method: string, path: string, body: Uint8Array | string, header: string | undefined, nowMs = Date.now()): boolean {
    const m = /^(\d{1,12})\.([\w-]{22})\.([\w-]{43})$/.exec(header ?? "");
    if (!m || !this.signKey) return false;
    const expiry = Number(m[1]);
    const nonce = m[2] as string;
    const now = nowMs / 1000;
    if (now >= expiry || expiry > now + SIGNATURE_TTL_SEC + 5) return false;
    const given = Buffer.from(m[3] as string);
    const wanted = Buffer.from(this.mac(this.id, method, path, body, expiry, nonce));
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) return false;
    // Expired nonces are forgotten (their signatures no longer hold anyway).
    for (const [seen, until] of this.nonces) {
      if (until > now) break;
      this.nonces.delete(seen);
    }
    if (this.nonces.has(nonce) || this.nonces.size >= MAX_NONCES) return false;
    this.nonces.set(nonce, now + SIGNATURE_TTL_SEC + 5);
    return true;
  }

  private mac(to: string, method: string, path: string, body: Uint8Array | string, expiry: number, nonce: string): string {
    if (!this.signKey) throw new Error("a solo replica calls no other replica");
    const bodyHash = createHash("sha256").update(body).digest("hex");
    return createHmac("sha256", this.signKey)
      .update(["catty internal v2", method.toUpperCase(), path, bodyHash, to, String(expiry), nonce].join("\n"))
      .digest("base64url");
  }

  /**
   * A signed request to another replica; `timeoutMs` bounds each try. `retries`: tries again after
   * a network error (a pooled connection the other side had closed is reset), for requests that
   * may be repeated.
   */
  async call(to: ReplicaRow, method: string, path: string, body?: unknown, opts: { timeoutMs?: number; retries?: number } = {}): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      try {
        const text = body === undefined ? undefined : JSON.stringify(body);
        return await fetch(new URL(path, to.url), {
          method,
          headers: { [INTERNAL_HEADER]: this.sign(to.id, method, path, text), ...(text === undefined ? {} : { "content-type": "application/json" }) },
          body: text,
          signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
        });
      } catch (err) {
        if (attempt >= (opts.retries ?? 0) || (err as Error).name === "TimeoutError") throw err;
      }
    }
  }

  /** Tells every other live replica (`POST path`), without waiting for, or minding, their answers. */
  broadcast(path: string, body: unknown): void {
    void this.others().then(
      (rows) => {
        for (const r of rows) {
          void this.call(r, "POST", path, body, { timeoutMs: 5_000, retries: 2 }).then(
            (res) => void res.body?.cancel(),
            (err: unknown) => this.opts.log.debug("could not tell a replica", { replica: r.id, path, err }),
          );
        }
      },
      (err: unknown) => this.opts.log.warn("could not list the replicas", { err }),
    );
  }
}
