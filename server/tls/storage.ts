/**
 * Where the ACME account and the certificates it obtained are kept: in the data dir, in
 * `tls/` (mode 0700, files 0600), as JSON. HTTP-01 challenge answers live in memory while an
 * order validates.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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
