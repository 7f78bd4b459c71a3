// The server's JSON endpoints: one call that sends the session's CSRF token with every request
// that changes something and turns an error answer into an exception.
import { state } from './state.js';

/**
 * Calls `path` and resolves to its JSON body (null when empty). `options.method` defaults to GET;
 * `options.body`, when given, is sent as JSON. Any other method carries the session's CSRF token
 * (`X-Linkbus-Csrf`). A status that is not 2xx rejects with an Error whose message is the error
 * body's `error` (`{error, code}`, the same on every endpoint), else the status text, whose `code`
 * is the body's `code` and whose `status` is the HTTP status; no answer at all rejects with `code`
 * `network` and `status` 0. `errorText` (i18n.js) says it in the page's language.
 */
export async function api(path, options = {}) {
  // Explanations come back in the page's language (the server renders them from their reasons).
  const headers = Object.assign({ accept: 'application/json', 'accept-language': state.lang }, options.headers || {});
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.method && options.method !== 'GET' && state.session) headers['x-linkbus-csrf'] = state.session.csrf;
  let response;
  try {
    response = await fetch(path, { method: options.method || 'GET', headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), credentials: 'same-origin' });
  } catch (cause) {
    throw Object.assign(new Error(cause.message), { code: 'network', status: 0 });
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
  if (!response.ok) {
    throw Object.assign(new Error(body?.error || response.statusText), { code: body?.code, status: response.status });
  }
  return body;
}
