/**
 * A certificate the operator brings (`--tls-cert`, `--tls-key`): read at start (a file that is not
 * a certificate and key stops the server there), and read again on SIGHUP or when either file
 * changes (certbot and friends replace them by renaming); a new pair that does not read is
 * logged and the one being served is kept.
 */
import { watch, type FSWatcher } from "node:fs";
import { readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import type { Log } from "../../src/lib/log.ts";
import { SettingsError } from "../../src/protocol/settings.ts";
import { parseCertificate, type Certificate } from "./certs.ts";

/** Reads the pair; throws a SettingsError naming the file at fault (catty-server: exit code 1). */
export function readCertificateFiles(certFile: string, keyFile: string): Certificate {
  const read = (file: string, what: string): string => {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new SettingsError(`cannot read the TLS ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const cert = read(certFile, "certificate (--tls-cert)");
  const key = read(keyFile, "key (--tls-key)");
  try {
    return parseCertificate(cert, key);
  } catch (err) {
    throw new SettingsError(`${certFile} or ${keyFile} ${(err as Error).message}`);
  }
}

export interface CertificateFiles {
  readonly current: Certificate;
  close(): void;
}

/** Watches the pair and calls `onChange` with each new one that reads (and is not the same). */
export function watchCertificateFiles(certFile: string, keyFile: string, onChange: (cert: Certificate) => Promise<void>, log: Log): CertificateFiles {
  let current = readCertificateFiles(certFile, keyFile);
  let timer: ReturnType<typeof setTimeout> | null = null;
  const reload = async (why: string): Promise<void> => {
    let next: Certificate;
    try {
      next = readCertificateFiles(certFile, keyFile);
    } catch (err) {
      log.error(`TLS certificate not reloaded (${why}): ${(err as Error).message}; still serving the one until ${current.notAfter.toISOString()}`);
      return;
    }
    if (next.cert === current.cert && next.key === current.key) return;
    try {
      await onChange(next);
      current = next;
      log.info(`TLS certificate reloaded (${why}): ${next.names.join(", ")}, valid until ${next.notAfter.toISOString()}`);
    } catch (err) {
      log.error(`TLS certificate not reloaded (${why}): ${(err as Error).message}; check that the key is the certificate's`);
    }
  };
  // A writer replaces both files, one after the other: read them once it is done.
  const soon = (why: string): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void reload(why), 200);
  };
  const names = new Set([basename(certFile), basename(keyFile)]);
  const watchers: FSWatcher[] = [...new Set([dirname(certFile), dirname(keyFile)])].map((dir) =>
    watch(dir, (_event, file) => {
      if (file === null || names.has(String(file))) soon("the file changed");
    }),
  );
  const onHup = (): void => soon("SIGHUP");
  process.on("SIGHUP", onHup);
  return {
    get current() {
      return current;
    },
    close() {
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
      process.off("SIGHUP", onHup);
    },
  };
}
