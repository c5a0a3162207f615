// view-deliveries.js - lifecycle webhooks: subscriptions, recent deliveries
// and dead letters with a retry button (GET /api/subscriptions,
// GET /api/deliveries, POST /api/deliveries/{id}/retry).  The tab shows only
// when the daemon has these endpoints (app.js asks once).

import { api, ApiError } from './api.js';
import { announce, badge, enc, errorBox, h, loading, pageHeader, shortId, table, time } from './dom.js';

const STATUSES = ['pending', 'delivered', 'failed', 'dead'];
const EVENTS = ['jobStart', 'jobComplete', 'jobError', 'pluginStart', 'pluginComplete', 'pluginError'];

function eventsText(ev) {
    if (!ev || ev === 'all' || (Array.isArray(ev) && ev.length === EVENTS.length))
        return 'all events';
    return Array.isArray(ev) ? ev.join(', ') || 'none' : String(ev);
}

function lastResult(d) {
    const parts = [];
    if (d.last_status !== null && d.last_status !== undefined)
        parts.push(`HTTP ${d.last_status}`);
    if (d.last_error)
        parts.push(d.last_error);
    return parts.length ? h('span', { class: d.status === 'delivered' ? '' : 'error-text' }, parts.join(': ')) : '—';
}

// A failed or dead delivery goes again (202); the button says so in place.
function retryButton(d, after) {
    const btn = h('button', { type: 'button', class: 'button small' }, 'Retry', h('span', { class: 'sr-only' }, ` delivery ${d.id}`));
    btn.addEventListener('click', async () => {
        if (btn.getAttribute('aria-busy'))
            return;
        btn.setAttribute('aria-busy', 'true');
        try {
            const { data } = await api(`/api/deliveries/${enc(d.id)}/retry`, { method: 'POST' });
            announce(`Delivery ${d.id} queued again${data && data.warning ? ` (${data.warning})` : ''}.`);
            btn.replaceWith(badge('pending', 'queued again'));
            if (after)
                after();
        } catch (e) {
            announce(`Delivery ${d.id} not retried: ${e.message}`, { error: true });
            btn.removeAttribute('aria-busy');
        }
    });
    return btn;
}

function deliveryColumns(withRetry) {
    const cols = [
        { label: 'Delivery', cell: (d) => h('code', {}, String(d.id)) },
        { label: 'Status', cell: (d) => badge(d.status) },
        { label: 'Event', cell: (d) => d.event || '—' },
        { label: 'Execution', cell: (d) => (d.job_id ? h('a', { href: `#/executions/${enc(d.job_id)}`, title: d.job_id }, h('code', {}, shortId(d.job_id))) : '—') },
        { label: 'Subscription', cell: (d) => h('code', {}, d.subscription_id || '—') },
        { label: 'Attempts', cell: (d) => String(d.attempt ?? '—') },
        { label: 'Last result', cell: lastResult },
        { label: 'Next attempt', cell: (d) => time(d.next_attempt_at) },
        { label: 'Updated', cell: (d) => time(d.updated_at) },
    ];
    if (withRetry)
        cols.push({ label: 'Action', cell: (d) => (d.status === 'failed' || d.status === 'dead' ? retryButton(d) : '—') });
    return cols;
}

export async function renderDeliveries(view) {
    const q = view.query;
    const filters = { subscription: q.get('subscription') || '', status: q.get('status') || '', event: q.get('event') || '' };
    view.main.append(pageHeader('Deliveries'),
                     h('p', { class: 'intro' }, 'Lifecycle events (jobStart, jobComplete, pluginError, …) sent to webhook receivers such as n8n or Make.com, signed, retried, and kept as dead letters when every attempt failed.'),
                     loading());
    const [subsR, delsR, deadR] = await Promise.allSettled([
        api('/api/subscriptions', { signal: view.signal }),
        api('/api/deliveries', { query: { ...filters, limit: 50 }, signal: view.signal }),
        api('/api/deliveries', { query: { subscription: filters.subscription, status: 'dead', limit: 50 }, signal: view.signal }),
    ]);
    view.main.lastChild.remove();

    // subscriptions
    view.main.append(h('h2', {}, 'Subscriptions'));
    const subs = subsR.status === 'fulfilled' ? subsR.value.data.items || [] : [];
    if (subsR.status === 'rejected')
        view.main.append(errorBox(subsR.reason, 'Could not list the subscriptions'));
    else
        view.main.append(table(`Subscriptions (${subs.length})`, [
            { label: 'ID', cell: (s) => h('a', { href: `#/deliveries?subscription=${enc(s.id)}` }, s.id) },
            { label: 'URL', cell: (s) => h('code', { class: 'wrap' }, s.url || '—') },
            { label: 'Events', cell: (s) => eventsText(s.events) },
            { label: 'Enabled', cell: (s) => [badge(s.enabled === false ? 'disabled' : 'enabled', s.enabled === false ? 'no' : 'yes'),
                s.disabled_reason ? h('span', { class: 'help' }, ` ${s.disabled_reason}`) : null] },
            { label: 'Attempts, timeout', cell: (s) => `${s.max_attempts ?? '—'} attempts, ${s.timeout_ms ?? '—'} ms` },
            { label: 'Defined in', cell: (s) => (!s.origin || s.origin === 'api' ? 'API' : h('code', { title: s.origin }, String(s.origin).split('/').pop())) },
        ], subs, { empty: 'No subscriptions: add them under subscriptions in host.yaml or with POST /api/subscriptions.' }));

    // filters
    const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter deliveries', novalidate: true });
    const errP = (id) => h('p', { id, class: 'field-error', hidden: true });
    const subSel = h('select', { id: 'd-subscription', 'aria-describedby': 'd-subscription-err' }, h('option', { value: '' }, 'All subscriptions'),
                     subs.map((s) => h('option', { value: s.id }, s.id)));
    const stSel = h('select', { id: 'd-status', 'aria-describedby': 'd-status-err' }, h('option', { value: '' }, 'Any status'),
                    STATUSES.map((s) => h('option', { value: s }, s)));
    const evSel = h('select', { id: 'd-event', 'aria-describedby': 'd-event-err' }, h('option', { value: '' }, 'Any event'),
                    EVENTS.map((s) => h('option', { value: s }, s)));
    for (const [sel, v] of [[subSel, filters.subscription], [stSel, filters.status], [evSel, filters.event]]) {
        if (v && ![...sel.options].some((o) => o.value === v))
            sel.append(h('option', { value: v }, v));
        sel.value = v;
    }
    form.append(h('div', { class: 'field' }, h('label', { for: 'd-subscription' }, 'Subscription'), subSel, errP('d-subscription-err')),
                h('div', { class: 'field' }, h('label', { for: 'd-status' }, 'Status'), stSel, errP('d-status-err')),
                h('div', { class: 'field' }, h('label', { for: 'd-event' }, 'Event'), evSel, errP('d-event-err')),
                h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'button primary' }, 'Apply'),
                  h('a', { href: '#/deliveries', class: 'button' }, 'Reset')));
    form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const p = new URLSearchParams();
        for (const [k, sel] of [['subscription', subSel], ['status', stSel], ['event', evSel]])
            if (sel.value)
                p.set(k, sel.value);
        view.navigate(p.toString() ? `#/deliveries?${p}` : '#/deliveries');
    });

    // dead letters first: they are what needs a person
    view.main.append(h('h2', {}, 'Dead letters'),
                     h('p', { class: 'help' }, 'Deliveries that used up their attempts. Retry sends one again from attempt 1.'));
    if (deadR.status === 'rejected')
        view.main.append(errorBox(deadR.reason, 'Could not list the dead letters'));
    else
        view.main.append(table('Dead letters', deliveryColumns(true), deadR.value.data.items || [],
                               { empty: 'No dead letters.' }));

    view.main.append(h('h2', {}, 'Recent deliveries'), form);
    if (delsR.status === 'rejected') {
        const e = delsR.reason;
        if (e instanceof ApiError)
            for (const d of e.details) {
                const el = document.getElementById(`d-${d.path}-err`);
                if (el) {
                    el.textContent = d.reason;
                    el.hidden = false;
                }
            }
        view.main.append(errorBox(e, 'Could not list the deliveries'));
        return;
    }
    const dels = delsR.value.data.items || [];
    view.main.append(table(`Recent deliveries (${dels.length}${delsR.value.data.next_cursor ? ', newest first; more exist' : ''})`,
                           deliveryColumns(true), dels, { empty: 'No deliveries match.' }));
}
