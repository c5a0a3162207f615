// api.js - every call the console makes goes through api(): the public REST
// API of the daemon that served the page, with the API key (when one is
// needed) as "Authorization: Bearer".  The key lives in this tab's
// sessionStorage only; a 401 clears it and asks for it again, then the
// request is retried, so views never deal with authentication.

const KEY_NAME = 'evhost.apiKey';

let askForKey = null; // (reason) => Promise<void>, set by app.js
let pendingAsk = null;

export function setKeyPrompt(fn) {
    askForKey = fn;
}

export function getKey() {
    try {
        return sessionStorage.getItem(KEY_NAME) || '';
    } catch {
        return ''; // storage disabled: ask every time the daemon says 401
    }
}

export function setKey(key) {
    try {
        if (key)
            sessionStorage.setItem(KEY_NAME, key);
        else
            sessionStorage.removeItem(KEY_NAME);
    } catch {
        /* storage disabled: nothing to keep */
    }
}

// One prompt at a time: requests that get 401 together wait for one answer.
function promptOnce(reason) {
    if (!pendingAsk)
        pendingAsk = askForKey(reason).finally(() => { pendingAsk = null; });
    return pendingAsk;
}

// The API's error object: {error: {code, message, details: [{path, reason}]}}.
export class ApiError extends Error {
    constructor(status, body, method, path) {
        const e = body && typeof body === 'object' && body.error ? body.error : null;
        super(e && e.message ? e.message : `${method} ${path}: HTTP ${status}`);
        this.name = 'ApiError';
        this.status = status;
        this.code = e ? e.code : 'http_' + status;
        this.details = e && Array.isArray(e.details) ? e.details : [];
        this.body = body;
    }
}

export function authHeaders() {
    const key = getKey();
    return key ? { Authorization: 'Bearer ' + key } : {};
}

// path: "/api/triggers"; query: {name: value} (empty values left out).
export function apiUrl(path, query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query || {})) {
        if (v !== undefined && v !== null && v !== '')
            q.set(k, v);
    }
    const s = q.toString();
    return s ? `${path}?${s}` : path;
}

// Resolves to {status, data, headers}; rejects with ApiError for any status
// other than 2xx/304 (and with the fetch's own error when aborted or offline).
export async function api(path, { method = 'GET', body, query, signal } = {}) {
    const url = apiUrl(path, query);
    for (;;) {
        const headers = { Accept: 'application/json', ...authHeaders() };
        if (body !== undefined)
            headers['Content-Type'] = 'application/json';
        const res = await fetch(url, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            signal,
            cache: 'no-store',
            credentials: 'omit',
        });
        if (res.status === 401 && askForKey) {
            const hadKey = getKey() !== '';
            setKey('');
            await promptOnce(hadKey ? 'refused' : 'required');
            continue;
        }
        const text = await res.text();
        let data = null;
        if (text) {
            try {
                data = JSON.parse(text);
            } catch {
                data = text;
            }
        }
        if (!res.ok)
            throw new ApiError(res.status, data, method, path);
        return { status: res.status, data, headers: res.headers };
    }
}

// Whether the daemon has an endpoint: false on 404 (or 405 for GET), true
// when it answers anything else.  For features other people are building
// (webhook deliveries): the console shows them only once the API has them.
export async function hasEndpoint(path, signal) {
    try {
        await api(path, { query: { limit: 1 }, signal });
        return true;
    } catch (e) {
        if (e instanceof ApiError)
            return e.status !== 404 && e.status !== 405 && e.status !== 501;
        return false;
    }
}

export function isAbort(e) {
    return e && (e.name === 'AbortError' || (e.cause && e.cause.name === 'AbortError'));
}
