// The dashboard's bearer token: asked for once per browser session (a small form), kept
// in sessionStorage only, and sent as the Authorization header on every API request.
// A link http://host:port/#token=... sets it; the fragment is then removed from the
// address bar (and browser history), so the token is not left on screen or bookmarked.

const KEY = "collector-token";
let pending = null; // the form's promise while it is shown

function takeFromFragment() {
  const match = /^#token=([A-Za-z0-9_-]+)/.exec(window.location.hash);
  if (!match) return;
  sessionStorage.setItem(KEY, match[1]);
  const { pathname, search } = window.location;
  history.replaceState(null, "", `${pathname}${search}`);
}

function form(message) {
  const box = document.createElement("form");
  box.className = "token-form";
  box.setAttribute("data-testid", "token-form");
  const label = document.createElement("label");
  label.textContent = message;
  const input = document.createElement("input");
  input.type = "password";
  input.autocomplete = "off";
  input.required = true;
  input.setAttribute("aria-label", "access token");
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Open";
  label.append(input);
  box.append(label, button);
  document.body.prepend(box);
  input.focus();
  return new Promise((resolve) => {
    box.addEventListener("submit", (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(KEY, token);
      box.remove();
      pending = null;
      resolve(token);
    });
  });
}

/** The session's token; asks for one when there is none. */
export function token(message = "Access token (cloud-collector token create):") {
  takeFromFragment();
  const known = sessionStorage.getItem(KEY);
  if (known) return Promise.resolve(known);
  pending ??= form(message);
  return pending;
}

/** The session's token if it is known already (for callers that cannot wait: the map's
 * tile requests, which start after the page's first authFetch has obtained it). */
export function knownToken() {
  return sessionStorage.getItem(KEY);
}

/** fetch() with the session's token; a 401 forgets it and asks again. */
export async function authFetch(path, init = {}) {
  const headers = new Headers(init.headers ?? {});
  headers.set("Authorization", `Bearer ${await token()}`);
  const r = await fetch(path, { ...init, headers });
  if (r.status === 401) {
    sessionStorage.removeItem(KEY);
    token("The token was refused (unknown, expired or revoked); another one:");
  }
  return r;
}

takeFromFragment(); // before the page's own router reads the fragment
