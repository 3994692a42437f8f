/**
 * A small ACME client (RFC 8555) on WebCrypto: an ES256 account key, JWS-signed requests with
 * replay nonces, one order for one domain validated with HTTP-01 (the server answers
 * `/.well-known/acme-challenge/<token>` on its HTTP port from `challenges`), finalized with a CSR
 * for a fresh P-256 key, and the certificate chain downloaded. Errors say which step failed and
 * what the certificate authority said.
 */
import { createCsr, pem } from "./csr.ts";

/** A private EC key as JWK (WebCrypto's Jwk, which the server's types do not name). */
export type Jwk = { kty?: string; crv?: string; x?: string; y?: string; d?: string };

const b64url = (bytes: Uint8Array | string): string => Buffer.from(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes).toString("base64url");

export class AcmeError extends Error {
  constructor(message: string, readonly type?: string) {
    super(message);
    this.name = "AcmeError";
  }
}

/** The account: its key as a private JWK, and its URL once registered. */
export interface AcmeAccount {
  jwk: Jwk;
  url: string | null;
}

export async function newAccountKey(): Promise<Jwk> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  return (await crypto.subtle.exportKey("jwk", keys.privateKey)) as Jwk;
}

interface Directory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
}

/** The public half of the account key, its members in the order RFC 7638 hashes them. */
const publicJwk = (jwk: Jwk): { crv: string; kty: string; x: string; y: string } => ({ crv: jwk.crv as string, kty: jwk.kty as string, x: jwk.x as string, y: jwk.y as string });

/** `token.thumbprint`: what the HTTP-01 challenge's file holds (RFC 8555 §8.1). */
export async function keyAuthorization(jwk: Jwk, token: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(publicJwk(jwk)))));
  return `${token}.${b64url(digest)}`;
}

export interface IssueOptions {
  directory: string;
  domain: string;
  email: string | null;
  account: AcmeAccount;
  /** Called when the account is registered, to keep its URL. */
  onAccount(account: AcmeAccount): Promise<void> | void;
  /** Where HTTP-01 tokens are published while the order validates. */
  publish(token: string, keyAuthorization: string): Promise<void> | void;
  unpublish(token: string): Promise<void> | void;
  /** How long to wait for validation and issuance altogether. */
  timeoutMs?: number;
}

/** Obtains a certificate for `domain`: the chain and its new private key, PEM. */
export async function issueCertificate(opts: IssueOptions): Promise<{ cert: string; key: string }> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  const accountKey = await (crypto.subtle.importKey as (f: "jwk", k: Jwk, a: { name: string; namedCurve: string }, e: boolean, u: string[]) => Promise<CryptoKey>)("jwk", opts.account.jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const step = async (what: string, res: Response): Promise<Response> => {
    if (res.ok) return res;
    const problem = (await res.json().catch(() => null)) as { type?: string; detail?: string } | null;
    throw new AcmeError(`${what}: HTTP ${res.status}${problem?.detail ? `: ${problem.detail}` : ""}`, problem?.type);
  };
  const dirRes = await step(`reading the ACME directory ${opts.directory}`, await fetch(opts.directory));
  const dir = (await dirRes.json()) as Directory;
  let nonce: string | null = null;
  const freshNonce = async (): Promise<string> => {
    const res = await fetch(dir.newNonce, { method: "HEAD" });
    const n = res.headers.get("replay-nonce");
    if (!n) throw new AcmeError(`no Replay-Nonce from ${dir.newNonce}`);
    return n;
  };
  let kid: string | null = null;
  /** A signed POST (payload null: POST-as-GET); a stale nonce is retried once with the one the error brought. */
  const post = async (what: string, url: string, payload: unknown, accept?: string): Promise<Response> => {
    for (let attempt = 0; ; attempt++) {
      const header = { alg: "ES256", nonce: nonce ?? (await freshNonce()), url, ...(kid ? { kid } : { jwk: publicJwk(opts.account.jwk) }) };
      nonce = null;
      const protectedB64 = b64url(JSON.stringify(header));
      const payloadB64 = payload === null ? "" : b64url(JSON.stringify(payload));
      const signature = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, accountKey, new TextEncoder().encode(`${protectedB64}.${payloadB64}`)));
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/jose+json", ...(accept ? { accept } : {}) },
        body: JSON.stringify({ protected: protectedB64, payload: payloadB64, signature: b64url(signature) }),
      });
      nonce = res.headers.get("replay-nonce");
      if (res.status === 400 && attempt === 0) {
        const problem = (await res.clone().json().catch(() => null)) as { type?: string } | null;
        if (problem?.type === "urn:ietf:params:acme:error:badNonce") continue;
      }
      return step(what, res);
    }
  };
  const poll = async <T extends { status: string }>(what: string, url: string, done: (v: T) => boolean): Promise<T> => {
    for (;;) {
      const v = (await (await post(what, url, null)).json()) as T;
      if (done(v) || v.status === "invalid") return v;
      if (Date.now() > deadline) throw new AcmeError(`${what}: still ${v.status} after ${Math.round((opts.timeoutMs ?? 120_000) / 1000)} s`);
      await Bun.sleep(500);
    }
  };

  // Registering an existing key answers with its account, so this also finds an account the
  // certificate authority forgot or one kept from another directory.
  {
    kid = null;
    const res = await post("registering the ACME account", dir.newAccount, {
      termsOfServiceAgreed: true,
      ...(opts.email ? { contact: [`mailto:${opts.email}`] } : {}),
    });
    kid = res.headers.get("location");
    if (!kid) throw new AcmeError("registering the ACME account: no account URL in the answer");
    if (kid !== opts.account.url) await opts.onAccount({ jwk: opts.account.jwk, url: kid });
  }
  const orderRes = await post(`ordering a certificate for ${opts.domain}`, dir.newOrder, { identifiers: [{ type: "dns", value: opts.domain }] });
  const orderUrl = orderRes.headers.get("location") as string;
  const order = (await orderRes.json()) as { authorizations: string[]; finalize: string };
  const published: string[] = [];
  try {
    for (const authzUrl of order.authorizations) {
      const authz = (await (await post("reading the authorization", authzUrl, null)).json()) as { status: string; challenges: Array<{ type: string; url: string; token: string }> };
      if (authz.status === "valid") continue;
      const challenge = authz.challenges.find((c) => c.type === "http-01");
      if (!challenge) throw new AcmeError(`the certificate authority offers no HTTP-01 challenge for ${opts.domain}`);
      await opts.publish(challenge.token, await keyAuthorization(opts.account.jwk, challenge.token));
      published.push(challenge.token);
      await post("answering the HTTP-01 challenge", challenge.url, {});
      const result = await poll<{ status: string; challenges: Array<{ type: string; error?: { detail?: string } }> }>("validating the domain", authzUrl, (a) => a.status === "valid");
      if (result.status !== "valid") {
        const why = result.challenges.find((c) => c.type === "http-01")?.error?.detail ?? "no reason given";
        throw new AcmeError(`the certificate authority could not validate ${opts.domain} over HTTP on port 80: ${why}. Check that its DNS points here and port 80 is open.`);
      }
    }
  } finally {
    for (const token of published) await opts.unpublish(token);
  }
  const certKeys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await createCsr(certKeys, [opts.domain]);
  await post("finalizing the order", order.finalize, { csr: b64url(csr) });
  const done = await poll<{ status: string; certificate?: string; error?: { detail?: string } }>("waiting for the certificate", orderUrl, (o) => o.status === "valid");
  if (done.status !== "valid" || !done.certificate) throw new AcmeError(`the order for ${opts.domain} failed: ${done.error?.detail ?? done.status}`);
  const chain = await (await post("downloading the certificate", done.certificate, null, "application/pem-certificate-chain")).text();
  const key = pem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", certKeys.privateKey)));
  return { cert: chain, key };
}
