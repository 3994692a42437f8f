/** @jsxImportSource preact */
/**
 * Approving a `catty login`: the person types the code their terminal shows (a link never fills
 * it in, so a link someone else sent approves nothing), then sees who asked — address, program,
 * time — before approving or denying.
 */
import { useState } from "preact/hooks";
import type { DeviceRequest } from "../../../src/protocol/web.ts";
import { api } from "./api.ts";

export function DevicePage({ user }: { user: string }) {
  const [code, setCode] = useState("");
  const [request, setRequest] = useState<DeviceRequest | null>(null);
  const [result, setResult] = useState<string | null>(null);
  const look = async (): Promise<void> => {
    setResult(null);
    try {
      setRequest(await api.device(code));
    } catch (err) {
      setResult((err as Error).message);
    }
  };
  const answer = async (approve: boolean): Promise<void> => {
    if (!request) return;
    try {
      await api.approve(request.userCode, approve);
      setRequest(null);
      setResult(approve ? "Approved: your terminal is signed in." : "Denied.");
    } catch (err) {
      setResult((err as Error).message);
    }
  };
  return (
    <main class="narrow">
      <h1>Sign in a terminal</h1>
      <p>Signed in as {user}. Type the code your terminal shows.</p>
      <label for="code">Code</label>
      <input id="code" value={code} onInput={(e) => (setCode(e.currentTarget.value), setRequest(null))} autocomplete="off" />
      <button type="button" onClick={() => void look()}>Continue</button>
      {request && (
        <section aria-label="Login request">
          <p>
            A terminal asked to sign in as {user} with code <strong>{request.userCode}</strong>. Approve only if this is
            your terminal and it asked just now.
          </p>
          <dl>
            <dt>From</dt>
            <dd>{request.requester.address ?? "unknown"}</dd>
            <dt>Program</dt>
            <dd>{request.requester.userAgent ?? "unknown"}</dd>
            <dt>Asked at</dt>
            <dd>{new Date(request.createdAt).toLocaleString()}</dd>
          </dl>
          <button type="button" onClick={() => void answer(true)}>Approve</button>
          <button type="button" class="danger" onClick={() => void answer(false)}>Deny</button>
        </section>
      )}
      {result && <p role="status">{result}</p>}
    </main>
  );
}
