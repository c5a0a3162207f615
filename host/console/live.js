// live.js - following running executions.
//
// When the daemon has the lifecycle stream (GET /api/events/stream,
// Server-Sent Events), views are told about each lifecycle event and
// refresh what they show; otherwise they poll every 2 s.  The stream is
// read with fetch() rather than EventSource, because EventSource cannot
// send the Authorization header an API key needs.  One stream serves every
// view; it is opened on first use and closed when no view listens.

import { authHeaders } from './api.js';

// Parse Server-Sent Events text: complete events out of `buffer`, plus the
// unfinished rest to prepend to the next chunk.  Each event is
// {event, data, id}: event defaults to "message", data lines are joined
// with "\n", comments (":") are skipped.
export function parseSSE(buffer) {
    const events = [];
    const text = buffer.replace(/\r\n?/g, '\n');
    let start = 0;
    for (;;) {
        const end = text.indexOf('\n\n', start);
        if (end < 0)
            break;
        const block = text.slice(start, end);
        start = end + 2;
        const ev = { event: 'message', data: [], id: null };
        for (const line of block.split('\n')) {
            if (line === '' || line.startsWith(':'))
                continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            let value = colon < 0 ? '' : line.slice(colon + 1);
            if (value.startsWith(' '))
                value = value.slice(1);
            if (field === 'event')
                ev.event = value;
            else if (field === 'data')
                ev.data.push(value);
            else if (field === 'id')
                ev.id = value;
        }
        if (ev.data.length || ev.id !== null)
            events.push({ event: ev.event, data: ev.data.join('\n'), id: ev.id });
    }
    return { events, rest: text.slice(start) };
}

const STREAM = '/api/events/stream';
let available = null; // null: not known yet; true / false
let controller = null;
let lastId = null;
const listeners = new Set();
let opening = null;

function dispatch(ev) {
    let json = null;
    try {
        json = JSON.parse(ev.data);
    } catch {
        /* not JSON: listeners still get the raw text */
    }
    for (const fn of [...listeners])
        fn({ type: ev.event, raw: ev.data, json, id: ev.id });
}

async function readLoop(res, ctl) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (done)
                break;
            buffer += decoder.decode(value, { stream: true });
            const { events, rest } = parseSSE(buffer);
            buffer = rest;
            for (const ev of events) {
                if (ev.id !== null)
                    lastId = ev.id;
                dispatch(ev);
            }
        }
    } catch {
        /* aborted or dropped: reconnect below if anyone still listens */
    }
    if (controller === ctl)
        controller = null;
    if (listeners.size && !ctl.signal.aborted)
        window.setTimeout(() => { if (listeners.size && !controller) open(); }, 2000);
}

// Resolves to whether the stream is available (and opens it when it is).
function open() {
    if (available === false)
        return Promise.resolve(false);
    if (controller)
        return Promise.resolve(true);
    if (opening)
        return opening;
    const ctl = new AbortController();
    const headers = { Accept: 'text/event-stream', ...authHeaders() };
    if (lastId !== null)
        headers['Last-Event-ID'] = lastId;
    opening = fetch(STREAM, { headers, signal: ctl.signal, cache: 'no-store', credentials: 'omit' })
        .then((res) => {
            const type = res.headers.get('Content-Type') || '';
            if (res.ok && type.startsWith('text/event-stream') && res.body) {
                available = true;
                controller = ctl;
                readLoop(res, ctl);
                return true;
            }
            // 404/405: this daemon has no stream; 401 and the rest: poll for now
            if (res.status === 404 || res.status === 405 || res.ok)
                available = false;
            ctl.abort();
            return false;
        })
        .catch(() => false)
        .finally(() => { opening = null; });
    return opening;
}

function closeIfIdle() {
    if (!listeners.size && controller) {
        controller.abort();
        controller = null;
    }
}

export function streamAvailable() {
    return available;
}

// Follow something that changes: refresh() re-reads it and resolves to
// whether it is still changing (false stops following).  With the stream,
// refresh runs (at most once a second) when a lifecycle event for which
// relevant(event) is true arrives, and every 15 s in case one was missed;
// without it, every pollMs.  Returns a function that stops following.
export function follow(refresh, { pollMs = 2000, relevant = () => true } = {}) {
    let stopped = false;
    let timer = null;
    let busy = false;
    let again = false;
    let listener = null;

    const stop = () => {
        stopped = true;
        window.clearTimeout(timer);
        if (listener) {
            listeners.delete(listener);
            closeIfIdle();
        }
    };
    const run = async () => {
        if (stopped)
            return;
        if (busy) {
            again = true;
            return;
        }
        busy = true;
        let more = true;
        try {
            more = await refresh();
        } catch {
            more = true; // a failed refresh (network) is retried at the next tick
        }
        busy = false;
        if (!more) {
            stop();
            return;
        }
        if (again) {
            again = false;
            window.setTimeout(run, 1000);
        }
    };
    const schedule = (ms) => {
        window.clearTimeout(timer);
        timer = window.setTimeout(async () => {
            await run();
            if (!stopped)
                schedule(ms);
        }, ms);
    };

    // listen before the stream opens, so that no event of its first chunk is missed
    listener = (ev) => { if (relevant(ev)) run(); };
    listeners.add(listener);
    open().then((ok) => {
        if (stopped)
            return;
        if (ok) {
            // what changed between the view's first read and the stream's
            // start has no event left to come: read once more now
            run();
            schedule(15000);
        } else {
            listeners.delete(listener);
            listener = null;
            schedule(pollMs);
        }
    });
    return stop;
}
