// dom.js - building the page without innerHTML: every value from the API
// becomes a text node, so nothing a plugin or a user wrote can turn into
// markup (and the strict Content-Security-Policy stays satisfied).

import { ApiError } from './api.js';

// h('a', {href: '#/x', class: 'y', onclick: fn, 'aria-label': 'z'}, 'text', child, [more])
export function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false)
            continue;
        if (k.startsWith('on') && typeof v === 'function')
            el.addEventListener(k.slice(2), v);
        else if (k === 'class')
            el.className = v;
        else if (k === 'dataset')
            Object.assign(el.dataset, v);
        else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled')
            el[k] = v;
        else
            el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
}

export function append(el, children) {
    for (const c of children.flat(Infinity)) {
        if (c === null || c === undefined || c === false)
            continue;
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
}

export function clear(el) {
    while (el.firstChild)
        el.removeChild(el.firstChild);
    return el;
}

let uid = 0;
export function newId(prefix) {
    uid += 1;
    return `${prefix}-${uid}`;
}

// The page's polite live region, or for errors the assertive one, which is
// also shown (a toast that clears itself).
let alertTimer = null;
export function announce(message, { error = false } = {}) {
    const region = document.getElementById(error ? 'alert' : 'status');
    if (!region)
        return;
    // clear first, so that the same message twice is read twice
    region.textContent = '';
    window.setTimeout(() => { region.textContent = message; }, 30);
    if (error) {
        window.clearTimeout(alertTimer);
        alertTimer = window.setTimeout(() => { region.textContent = ''; }, 8000);
    }
}

// ---- formatting -------------------------------------------------------------

function pad(n, w = 2) {
    return String(n).padStart(w, '0');
}

// "2026-11-25 10:30:05" in the browser's time zone; <time> keeps the original.
export function time(iso) {
    if (!iso)
        return h('span', { class: 'muted' }, '—');
    const d = new Date(iso);
    if (Number.isNaN(d.getTime()))
        return h('span', {}, iso);
    const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
                 `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return h('time', { datetime: iso, title: iso }, text);
}

export function duration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms))
        return '—';
    if (ms < 1)
        return `${ms.toFixed(3)} ms`;
    if (ms < 1000)
        return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
    if (ms < 60000)
        return `${(ms / 1000).toFixed(2)} s`;
    const m = Math.floor(ms / 60000);
    return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function between(startIso, endIso) {
    if (!startIso || !endIso)
        return null;
    const a = Date.parse(startIso), b = Date.parse(endIso);
    return Number.isNaN(a) || Number.isNaN(b) ? null : b - a;
}

export function shortId(id) {
    return id && id.length > 12 ? id.slice(0, 8) : id || '';
}

// ---- small components ------------------------------------------------------

const STATE_KIND = {
    running: 'ok', ready: 'ok', succeeded: 'ok', active: 'ok', delivered: 'ok', enabled: 'ok',
    true: 'ok', yes: 'ok',
    queued: 'info', loaded: 'info', pending: 'info', skipped: 'muted', inactive: 'muted',
    stopped: 'muted', disabled: 'muted',
    failed: 'bad', quarantined: 'bad', dead: 'bad', dead_letter: 'bad', false: 'bad', no: 'bad',
};

// A status word with a shape and a colour (never the colour alone).  A
// plugin "running" is healthy; pass kind 'run' for work in progress.
export function badge(state, label, kind) {
    const s = String(state ?? 'unknown');
    kind = kind || STATE_KIND[s] || (s.includes('dead') ? 'bad' : 'info');
    const icon = { ok: '✓', bad: '✕', info: '•', muted: '–', run: '▶' }[kind];
    return h('span', { class: `badge badge-${kind}`, dataset: { state: s } },
             h('span', { 'aria-hidden': 'true' }, icon + ' '), label ?? s);
}

export function jsonBlock(value, label) {
    const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
    return h('pre', { class: 'json', tabindex: '0', 'aria-label': label || 'JSON' }, h('code', {}, text));
}

// Definition list from [[term, value], ...] (value: text or node; null rows skipped).
export function facts(rows, cls = 'facts') {
    return h('dl', { class: cls },
             rows.filter((r) => r && r[1] !== undefined).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

// A table whose cells carry their column's name, so that at phone width the
// stylesheet can show each row as a card ("Status: succeeded").
export function table(caption, columns, rows, { empty = 'Nothing here yet.', rowAttrs } = {}) {
    if (!rows.length)
        return h('p', { class: 'empty' }, empty);
    return h('div', { class: 'table-wrap' },
             h('table', { class: 'grid' },
               h('caption', { class: caption.visible ? '' : 'sr-only' }, caption.text || caption),
               h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
               h('tbody', {}, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {},
                 columns.map((c, i) => h(i === 0 ? 'th' : 'td', { scope: i === 0 ? 'row' : null, 'data-label': c.label },
                                         c.cell(r))))))));
}

// An error from the API (or the network) as an alert box.
export function errorBox(err, prefix) {
    const box = h('div', { class: 'error-box', role: 'alert' });
    const msg = err instanceof ApiError ? err.message
        : (err && err.message) ? `The daemon could not be reached: ${err.message}` : String(err);
    append(box, [h('p', {}, h('strong', {}, prefix ? prefix + ': ' : 'Error: '), msg)]);
    if (err instanceof ApiError && err.details.length > 1)
        box.append(h('ul', {}, err.details.map((d) => h('li', {}, h('code', {}, d.path), ': ', d.reason))));
    return box;
}

export function loading(text = 'Loading…') {
    return h('p', { class: 'loading', role: 'status' }, text);
}

export function pageHeader(title, ...extra) {
    return h('div', { class: 'page-head' },
             h('h1', { tabindex: '-1', class: 'page-title' }, title),
             extra.length ? h('div', { class: 'page-actions' }, extra) : null);
}

export function crumbs(items) {
    return h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' },
             h('ol', {}, items.map(([text, href]) =>
                 h('li', {}, href ? h('a', { href }, text) : h('span', { 'aria-current': 'page' }, text)))));
}

export function link(href, text) {
    return h('a', { href }, text);
}

export function enc(s) {
    return encodeURIComponent(s);
}
