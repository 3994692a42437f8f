/**
 * Where the ACME account and the certificates it obtained are kept: a server of its own keeps
 * them in the data dir, in `tls/` (mode 0700, files 0600), as JSON, and HTTP-01 answers in
 * memory while an order validates; replicas sharing a database keep all of it there.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Store } from "../store/types.ts";
import type { AcmeAccount } from "./acme.ts";

export interface StoredCertificate {
  cert: string;
  key: string;
}

export interface TlsStorage {
  account(): Promise<AcmeAccount | null>;
  saveAccount(account: AcmeAccount): Promise<void>;
  certificate(domain: string): Promise<StoredCertificate | null>;
  saveCertificate(domain: string, cert: StoredCertificate): Promise<void>;
  /** The key authorization for an HTTP-01 token being validated, or null. */
  challenge(token: string): Promise<string | null>;
  publish(token: string, keyAuthorization: string): Promise<void>;
  unpublish(token: string): Promise<void>;
}

export function dataDirTlsStorage(dataDir: string): TlsStorage {
  const dir = join(dataDir, "tls");
  const challenges = new Map<string, string>();
  const read = <T>(file: string): T | null => {
    const path = join(dir, file);
    if (!existsSync(path)) return null;
    return JSON.parse(readFileSync(path, "utf8")) as T;
  };
  const write = (file: string, value: unknown): void => {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const tmp = join(dir, `.${file}.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify(value), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, join(dir, file));
  };
  const certFile = (domain: string): string => `certificate-${domain}.json`;
  return {
    account: async () => read<AcmeAccount>("acme-account.json"),
    saveAccount: async (account) => write("acme-account.json", account),
    certificate: async (domain) => read<StoredCertificate>(certFile(domain)),
    saveCertificate: async (domain, cert) => write(certFile(domain), cert),
    challenge: async (token) => challenges.get(token) ?? null,
    publish: async (token, auth) => void challenges.set(token, auth),
    unpublish: async (token) => void challenges.delete(token),
  };
}

/**
 * Replicas sharing a database keep the account and certificates in it (`server_state`), sealed
 * with a key derived from the master key they share (AES-256-GCM), so every replica serves the
 * certificate one of them obtained; HTTP-01 answers are there too, as the certificate authority's
 * request may reach any replica.
 */
export function storeTlsStorage(store: Store, masterKey: Buffer): TlsStorage {
  const key = Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), "catty tls state v1", 32));
  const seal = (name: string, value: unknown): string => {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", key, iv).setAAD(Buffer.from(name));
    const body = Buffer.concat([cipher.update(JSON.stringify(value), "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
  };
  const open = <T>(name: string, sealed: string | null): T | null => {
    if (sealed === null) return null;
    const bytes = Buffer.from(sealed, "base64");
    const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, 12)).setAAD(Buffer.from(name));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString("utf8")) as T;
  };
  const now = (): string => new Date().toISOString();
  const get = async <T>(name: string): Promise<T | null> => open<T>(name, await store.serverState(name));
  const put = (name: string, value: unknown): Promise<void> => store.setServerState(name, seal(name, value), now());
  return {
    account: () => get<AcmeAccount>("tls:acme-account"),
    saveAccount: (account) => put("tls:acme-account", account),
    certificate: (domain) => get<StoredCertificate>(`tls:certificate:${domain}`),
    saveCertificate: (domain, cert) => put(`tls:certificate:${domain}`, cert),
    challenge: (token) => store.serverState(`tls:challenge:${token}`),
    publish: (token, auth) => store.setServerState(`tls:challenge:${token}`, auth, now()),
    unpublish: (token) => store.setServerState(`tls:challenge:${token}`, null, now()),
  };
}

/**
 * Runs an order under the lease `tls-acme`, renewed while it runs, so one replica orders at a
 * time; false, without running it, when another replica holds the lease.
 */
export function underLease(store: Store, holder: string): (order: () => Promise<void>) => Promise<boolean> {
  const LEASE_MS = 5 * 60_000;
  const take = (): Promise<boolean> => store.takeLease("tls-acme", holder, new Date(Date.now() + LEASE_MS).toISOString(), new Date().toISOString());
  return async (order) => {
    if (!(await take())) return false;
    const renew = setInterval(() => void take().catch(() => {}), LEASE_MS / 5);
    try {
      await order();
      return true;
    } finally {
      clearInterval(renew);
      await store.releaseLease("tls-acme", holder).catch(() => {});
    }
  };
}
