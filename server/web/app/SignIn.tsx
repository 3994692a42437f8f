/** @jsxImportSource preact */
/** Signing the browser in with an API token. */
import { useState } from "preact/hooks";
import { api, ApiError } from "./api.ts";

export function SignIn({ onSignedIn }: { onSignedIn(user: string): void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  return (
    <main class="narrow">
      <h1>Catty</h1>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            onSignedIn(await api.signIn(token.trim()));
          } catch (err) {
            setError(err instanceof ApiError && err.hint ? `${err.message} ${err.hint}` : (err as Error).message);
          }
        }}
      >
        <label for="token">API token</label>
        <input id="token" type="password" autocomplete="off" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <button type="submit">Sign in</button>
        {error && <p role="alert" class="error">{error}</p>}
        <p class="hint">Get a token with <code>catty-server token create --user NAME</code> on the server.</p>
      </form>
    </main>
  );
}
