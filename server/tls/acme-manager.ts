/**
 * Keeps a certificate for `--domain`: serves the stored one at once, orders one when there is
 * none or it is within `renewDays` of expiry, and retries a failed order with backoff (1 min,
 * doubling, at most 6 h) while the current certificate goes on being served. Every step is
 * logged: what was obtained and until when, or what failed, when it is tried again, and what is
 * served meanwhile.
 */
import type { Log } from "../../src/lib/log.ts";
import { issueCertificate, newAccountKey } from "./acme.ts";
import { parseCertificate, type Certificate } from "./certs.ts";
import type { TlsStorage } from "./storage.ts";

const DAY = 86_400_000;
const FIRST_RETRY_MS = 60_000;
const MAX_RETRY_MS = 6 * 3_600_000;
/** Even a certificate far from expiry is looked at this often (a clock that jumped, another replica's renewal). */
const CHECK_MS = 12 * 3_600_000;

/** How long to wait before the next try after `failures` failed orders in a row: 1 min, doubling, at most 6 h. */
export const retryDelayMs = (failures: number): number => Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(failures, 20));

export interface AcmeManagerOptions {
  domain: string;
  directory: string;
  email: string | null;
  renewDays: number;
  storage: TlsStorage;
  log: Log;
  /** Called with each certificate to serve: the stored one at start, then each new one. */
  onCertificate(cert: Certificate): Promise<void>;
  /** Runs an order where only one replica may at a time; resolves false when another holds it. */
  exclusive?(order: () => Promise<void>): Promise<boolean>;
  now?(): number;
}

export interface AcmeManager {
  current(): Certificate | null;
  close(): void;
}

export async function startAcmeManager(opts: AcmeManagerOptions): Promise<AcmeManager> {
  const now = opts.now ?? Date.now;
  const log = opts.log;
  let current: Certificate | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;
  let failures = 0;

  /** The stored certificate, when it is newer than the one served (another replica may have renewed it). */
  const loadStored = async (): Promise<void> => {
    const stored = await opts.storage.certificate(opts.domain);
    if (!stored || stored.cert === current?.cert) return;
    let cert: Certificate;
    try {
      cert = parseCertificate(stored.cert, stored.key);
    } catch (err) {
      log.error(`TLS: the stored certificate for ${opts.domain} does not read (${(err as Error).message}); ordering a new one`);
      return;
    }
    // A listener that cannot serve it is the caller's error (at start: the server does not start).
    await opts.onCertificate(cert);
    current = cert;
    log.info(`TLS: serving the certificate for ${opts.domain}, valid until ${cert.notAfter.toISOString()}`);
  };
  const due = (): boolean => current === null || now() >= current.notAfter.getTime() - opts.renewDays * DAY;

  const order = async (): Promise<void> => {
    const account = (await opts.storage.account()) ?? { jwk: await newAccountKey(), url: null };
    if (account.url === null) await opts.storage.saveAccount(account);
    log.info(`TLS: ${current ? "renewing" : "obtaining"} a certificate for ${opts.domain} from ${opts.directory}`);
    const issued = await issueCertificate({
      directory: opts.directory,
      domain: opts.domain,
      email: opts.email,
      account,
      onAccount: (a) => opts.storage.saveAccount(a),
      publish: (token, auth) => opts.storage.publish(token, auth),
      unpublish: (token) => opts.storage.unpublish(token),
    });
    const cert = parseCertificate(issued.cert, issued.key);
    await opts.storage.saveCertificate(opts.domain, issued);
    await opts.onCertificate(cert);
    current = cert;
    log.info(`TLS: obtained a certificate for ${opts.domain}, valid until ${cert.notAfter.toISOString()}`);
  };

  const schedule = (ms: number): void => {
    if (closed) return;
    timer = setTimeout(() => void check(), Math.max(0, Math.min(ms, CHECK_MS)));
  };
  const check = async (): Promise<void> => {
    timer = null;
    try {
      await loadStored();
      if (due()) {
        const ran = opts.exclusive ? await opts.exclusive(order) : (await order(), true);
        // Another replica is ordering: look again soon for the certificate it stores.
        if (!ran) {
          log.info(`TLS: another replica is ordering the certificate for ${opts.domain}; serving the one it stores`);
          return schedule(FIRST_RETRY_MS / 12);
        }
        if (due()) log.warn(`TLS: the new certificate is already within CATTY_ACME_RENEW_DAYS (${opts.renewDays}) of expiry; looking again in 12 h`);
      }
      failures = 0;
      const renewAt = (current as Certificate | null)?.notAfter.getTime() ?? now();
      schedule(due() ? CHECK_MS : renewAt - opts.renewDays * DAY - now());
    } catch (err) {
      const wait = retryDelayMs(failures);
      failures++;
      const serving = current ? `still serving the current certificate, valid until ${current.notAfter.toISOString()}` : "HTTPS is not served until one is obtained";
      log.error(`TLS: could not ${current ? "renew" : "obtain"} the certificate for ${opts.domain}: ${(err as Error).message}; trying again in ${Math.round(wait / 60_000)} min; ${serving}`);
      schedule(wait);
    }
  };
  await loadStored();
  void check();
  return {
    current: () => current,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
}
