// The only way the dashboard talks to the server: the JSON API under /api/v1, with the admin
// token from sessionStorage (never in a URL, gone when the tab closes).

const TOKEN_KEY = 'triggerd.adminToken';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API: `{error, code, details}` with its HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.details = body && body.details;
  }
}

/**
 * Calls the API. Resolves to the parsed body (null for 204), rejects with ApiError. A 401 signs
 * the user out (the token was reset or the server restarted with another one).
 */
export async function api(method, path, body, { tokenOverride } = {}) {
  const headers = { Authorization: `Bearer ${tokenOverride || token() || ''}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, init);
  } catch (e) {
    throw new ApiError(0, { error: `The server did not answer (${e.message}). Is triggerd running?`, code: 'network' });
  }
  const text = await response.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = { error: text.slice(0, 200) }; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed);
    if (response.status === 401 && !tokenOverride) {
      clearToken();
      window.dispatchEvent(new CustomEvent('triggerd:signed-out', { detail: error.message }));
    }
    throw error;
  }
  return parsed;
}

/** `?a=1&b=2` from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Path segment escaping for ids and names taken from the page. */
export function seg(value) {
  return encodeURIComponent(value);
}
