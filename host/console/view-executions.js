// view-executions.js - every run of a workflow (GET /api/executions): the
// list with its filters and keyset pages, and one execution with its step
// timeline, progress, replay, and live updates while it runs (live.js).

import { api, ApiError } from './api.js';
import {
    announce, badge, between, clear, crumbs, duration, enc, errorBox, facts, h, jsonBlock, loading, pageHeader,
    shortId, table, time,
} from './dom.js';
import { follow } from './live.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed'];
const FILTERS = ['workflow', 'trigger', 'status', 'since', 'until'];

// Newer pages, per filter set, so "Newer" can go back (the API's cursors
// only go one way).
const pageStack = new Map();

function pad(n) {
    return String(n).padStart(2, '0');
}

// RFC 3339 (UTC) <-> the local "YYYY-MM-DDTHH:MM" of <input type=datetime-local>
function toLocalInput(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime()))
        return '';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocalInput(v) {
    if (!v)
        return '';
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? v : d.toISOString();
}

function running(status) {
    return status === 'queued' || status === 'running';
}

// An execution's or a step run's status: running is work in progress here.
function statusBadge(status) {
    return badge(status, undefined, status === 'running' ? 'run' : undefined);
}

// The API's timestamps have millisecond resolution: 0 means under 1 ms.
function execDuration(e) {
    const ms = between(e.started_at, e.finished_at || (running(e.status) ? new Date().toISOString() : null));
    return ms === 0 ? '< 1 ms' : duration(ms);
}

function triggerLink(id) {
    if (!id)
        return '—';
    const base = id.split('#')[0];
    return id.includes('#') ? [h('a', { href: `#/triggers/${enc(base)}` }, base), ` (${id.slice(base.length + 1)})`]
        : h('a', { href: `#/triggers/${enc(id)}` }, id);
}

function execLink(id, text) {
    return h('a', { href: `#/executions/${enc(id)}`, title: id }, text || h('code', {}, shortId(id)),
             h('span', { class: 'sr-only' }, ` execution ${id}`));
}

// ---- list ----------------------------------------------------------------------------

export async function renderExecutionList(view) {
    const q = view.query;
    const filters = {};
    for (const f of FILTERS)
        filters[f] = q.get(f) || '';
    const cursor = q.get('cursor') || '';
    const filterKey = FILTERS.map((f) => filters[f]).join('|');
    const stack = pageStack.get(filterKey) || [];
    pageStack.set(filterKey, stack);

    view.main.append(pageHeader('Executions'),
                     h('p', { class: 'intro' }, 'Every run of a workflow, newest first. Open one for its step timeline.'));

    // filters (their choices come from the API; the list does not wait for them)
    const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter executions', novalidate: true });
    const mk = (name, label, control) => {
        control.id = `f-${name}`;
        control.name = name;
        control.setAttribute('aria-describedby', `f-${name}-err`);
        return h('div', { class: 'field' }, h('label', { for: control.id }, label), control,
                 h('p', { id: `f-${name}-err`, class: 'field-error', hidden: true }));
    };
    const wfSel = h('select', {}, h('option', { value: '' }, 'All workflows'));
    const trSel = h('select', {}, h('option', { value: '' }, 'All triggers'));
    const stSel = h('select', {}, h('option', { value: '' }, 'Any status'), STATUSES.map((s) => h('option', { value: s }, s)));
    const since = h('input', { type: 'datetime-local', step: '60' });
    const until = h('input', { type: 'datetime-local', step: '60' });
    form.append(mk('workflow', 'Workflow', wfSel), mk('trigger', 'Trigger', trSel), mk('status', 'Status', stSel),
                mk('since', 'Created from', since), mk('until', 'Created before', until),
                h('div', { class: 'field actions' }, h('button', { type: 'submit', class: 'button primary' }, 'Apply'),
                  h('a', { href: '#/executions', class: 'button' }, 'Reset')));
    const addCurrent = (sel, value) => {
        if (value && ![...sel.options].some((o) => o.value === value))
            sel.append(h('option', { value }, value));
        sel.value = value;
    };
    addCurrent(wfSel, filters.workflow);
    addCurrent(trSel, filters.trigger);
    stSel.value = filters.status;
    since.value = toLocalInput(filters.since);
    until.value = toLocalInput(filters.until);
    form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const p = new URLSearchParams();
        const vals = { workflow: wfSel.value, trigger: trSel.value, status: stSel.value,
                       since: fromLocalInput(since.value), until: fromLocalInput(until.value) };
        for (const [k, v] of Object.entries(vals))
            if (v)
                p.set(k, v);
        const s = p.toString();
        view.navigate(s ? `#/executions?${s}` : '#/executions');
    });
    view.main.append(form);
    Promise.all([api('/api/workflows', { signal: view.signal }), api('/api/triggers', { signal: view.signal })])
        .then(([w, t]) => {
            for (const x of w.data.items || [])
                if (x.id !== filters.workflow)
                    wfSel.append(h('option', { value: x.id }, x.name && x.name !== x.id ? `${x.name} (${x.id})` : x.id));
            for (const x of t.data.items || [])
                if (x.id !== filters.trigger)
                    trSel.append(h('option', { value: x.id }, x.name && x.name !== x.id ? `${x.name} (${x.id})` : x.id));
        })
        .catch(() => { /* the filters still take what the URL says */ });

    const listBox = h('div', { class: 'list-box' }, loading());
    const refresh = h('button', { type: 'button', class: 'button' }, 'Refresh');
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
    view.main.append(h('div', { class: 'list-actions' }, refresh), listBox, pager);

    const query = { ...filters, cursor, limit: 25 };
    let items = [];
    let next = null;
    const rowsById = new Map();

    const statusCell = (e) => h('span', { class: 'status-cell' }, statusBadge(e.status));
    const columns = [
        { label: 'Execution', cell: (e) => execLink(e.id) },
        { label: 'Status', cell: statusCell },
        { label: 'Workflow', cell: (e) => h('a', { href: `#/workflows/${enc(e.workflow_id)}` }, e.workflow_id) },
        { label: 'Trigger', cell: (e) => triggerLink(e.trigger_id) },
        { label: 'Created', cell: (e) => time(e.created_at) },
        { label: 'Duration', cell: (e) => h('span', { class: 'duration-cell' }, execDuration(e)) },
        { label: 'Replay of', cell: (e) => (e.replay_of ? execLink(e.replay_of) : '—') },
    ];

    async function load({ quiet } = {}) {
        let data;
        try {
            ({ data } = await api('/api/executions', { query, signal: view.signal }));
        } catch (e) {
            if (e instanceof ApiError && e.status === 400) {
                // a bad filter: said next to it
                for (const d of e.details) {
                    const err = document.getElementById(`f-${d.path}-err`);
                    if (err) {
                        err.textContent = d.reason;
                        err.hidden = false;
                        document.getElementById(`f-${d.path}`).setAttribute('aria-invalid', 'true');
                    }
                }
            }
            clear(listBox).append(errorBox(e, 'Could not list the executions'));
            return false;
        }
        items = data.items || [];
        next = data.next_cursor;
        if (quiet && rowsById.size && items.every((e) => rowsById.has(e.id))) {
            // same rows: update in place, so focus and scroll stay put
            for (const e of items) {
                const tr = rowsById.get(e.id);
                const st = tr.querySelector('.status-cell');
                if (st && st.firstChild.dataset.state !== e.status)
                    st.replaceChildren(statusBadge(e.status));
                const du = tr.querySelector('.duration-cell');
                if (du)
                    du.textContent = execDuration(e);
            }
        } else {
            rowsById.clear();
            clear(listBox).append(table(`Executions${cursor ? ' (older page)' : ''}: ${items.length} shown`, columns, items, {
                empty: Object.values(filters).some(Boolean) ? 'No execution matches these filters.'
                    : 'No executions yet: they appear when a trigger matches an event.',
                rowAttrs: (e) => ({ dataset: { id: e.id, status: e.status } }),
            }));
            for (const tr of listBox.querySelectorAll('tbody tr'))
                rowsById.set(tr.dataset.id, tr);
        }
        for (const e of items) {
            const tr = rowsById.get(e.id);
            if (tr)
                tr.dataset.status = e.status;
        }
        renderPager();
        return items.some((e) => running(e.status));
    }

    function go(c) {
        const p = new URLSearchParams();
        for (const f of FILTERS)
            if (filters[f])
                p.set(f, filters[f]);
        if (c)
            p.set('cursor', c);
        const s = p.toString();
        view.navigate(s ? `#/executions?${s}` : '#/executions');
    }

    function renderPager() {
        clear(pager);
        if (cursor) {
            pager.append(h('button', { type: 'button', class: 'button', onclick: () => go(stack.length ? stack.pop() : '') }, '← Newer'),
                         ' ', h('button', { type: 'button', class: 'button', onclick: () => { stack.length = 0; go(''); } }, 'Newest'));
        }
        if (next)
            pager.append(' ', h('button', { type: 'button', class: 'button', onclick: () => { stack.push(cursor); go(next); } }, 'Older →'));
    }

    refresh.addEventListener('click', async () => {
        refresh.setAttribute('aria-busy', 'true');
        rowsById.clear();
        await load();
        refresh.removeAttribute('aria-busy');
        announce(`${items.length} executions shown.`);
    });

    const anyRunning = await load();
    // running executions on this page: follow them until they finish
    let stop = null;
    if (anyRunning)
        stop = follow(() => load({ quiet: true }), { pollMs: 2000 });
    return () => { if (stop) stop(); };
}

// ---- detail ----------------------------------------------------------------------------

function lastFailedStep(ex) {
    const runs = ex.steps || [];
    for (let i = runs.length - 1; i >= 0; i--)
        if (runs[i].status === 'failed')
            return runs[i].step_id;
    return null;
}

function metricsList(m) {
    if (!m || typeof m !== 'object' || !Object.keys(m).length)
        return null;
    return h('dl', { class: 'metrics' }, Object.entries(m).map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
}

function stepRun(run, index) {
    const skipped = run.status === 'skipped';
    return h('li', { class: `run run-${run.status}`, dataset: { step: run.step_id, status: run.status } },
             h('div', { class: 'run-head' },
               h('h3', {}, h('span', { class: 'run-index' }, `${index + 1}.`), ' ', h('code', {}, run.step_id)),
               statusBadge(run.status),
               h('span', { class: 'run-meta' },
                 h('span', {}, 'plugin ', h('a', { href: `#/steps/${enc(run.plugin)}` }, run.plugin)),
                 h('span', {}, skipped ? 'not run (output reused)' : `attempt ${run.attempt}`),
                 h('span', {}, 'duration ', duration(run.duration_ms)),
                 run.started_at ? h('span', {}, 'started ', time(run.started_at)) : null)),
             run.error ? h('div', { class: 'run-error' }, h('h4', {}, 'Error'), h('pre', { class: 'json error-text' }, run.error)) : null,
             run.output !== null && run.output !== undefined
                 ? h('details', { open: !run.error }, h('summary', {}, 'Output'), jsonBlock(run.output, `Output of ${run.step_id}`)) : null,
             metricsList(run.metrics) ? h('div', { class: 'run-metrics' }, h('h4', {}, 'Metrics'), metricsList(run.metrics)) : null);
}

export async function renderExecutionDetail(view, id) {
    view.main.append(crumbs([['Executions', '#/executions'], [shortId(id)]]), loading());
    let ex;
    try {
        ({ data: ex } = await api(`/api/executions/${enc(id)}`, { signal: view.signal }));
    } catch (e) {
        view.main.lastChild.remove();
        view.main.append(pageHeader(`Execution ${shortId(id)}`), errorBox(e));
        return null;
    }
    view.main.lastChild.remove();
    view.setTitle(`Execution ${shortId(id)}`);

    const head = pageHeader(`Execution ${shortId(id)}`);
    const statusSlot = h('span', { class: 'status-slot' });
    head.querySelector('h1').append(' ', statusSlot);
    const summary = h('div', { class: 'exec-summary' });
    const progressBox = h('div', { class: 'progress-box' });
    const actions = h('div', { class: 'actions replay' });
    const replayMsg = h('div', { class: 'replay-msg', 'aria-live': 'polite' });
    const timeline = h('ol', { class: 'timeline', 'aria-label': 'Step timeline' });
    const eventBox = h('details', { class: 'event-box' }, h('summary', {}, 'The event'));
    view.main.append(head, summary, progressBox, h('h2', {}, 'Replay'), h('p', { class: 'help' },
        'Runs the workflow again, as loaded now, for the same event. From a step: the steps before it are not run, their earlier output is reused.'),
    actions, replayMsg, h('h2', {}, 'Step timeline'), timeline, eventBox);

    const fromStart = h('button', { type: 'button', class: 'button' }, 'Replay from start');
    const fromFailed = h('button', { type: 'button', class: 'button', hidden: true }, 'Replay from the failed step');
    actions.append(fromStart, ' ', fromFailed);

    async function replay(step) {
        clear(replayMsg).append(loading('Starting the replay…'));
        try {
            const { data } = await api(`/api/executions/${enc(ex.id)}/replay`, { method: 'POST', query: step ? { from_step: step } : {} });
            clear(replayMsg).append(h('p', { class: 'success' }, 'Replay queued: ', execLink(data.id, `execution ${shortId(data.id)}`), '.'));
            announce(`Replay ${shortId(data.id)} queued; opening it.`);
            view.navigate(`#/executions/${enc(data.id)}`);
        } catch (e) {
            clear(replayMsg).append(errorBox(e, 'Not replayed'));
        }
    }
    fromStart.addEventListener('click', () => replay(null));
    fromFailed.addEventListener('click', () => replay(fromFailed.dataset.step));

    let lastStatus = null;
    function paint() {
        statusSlot.replaceChildren(statusBadge(ex.status));
        summary.replaceChildren(facts([
            ['ID', h('code', {}, ex.id)],
            ['Workflow', [h('a', { href: `#/workflows/${enc(ex.workflow_id)}` }, ex.workflow_id), ex.workflow_version ? [' ', h('code', { class: 'muted', title: 'workflow version' }, ex.workflow_version)] : null]],
            ['Trigger', triggerLink(ex.trigger_id)],
            ['Event', h('code', {}, ex.event_id)],
            ['Created', time(ex.created_at)],
            ['Started', time(ex.started_at)],
            ['Finished', time(ex.finished_at)],
            ['Duration', execDuration(ex)],
            ['Replay of', ex.replay_of ? execLink(ex.replay_of) : '—'],
            ex.error ? ['Error', h('span', { class: 'error-text' }, ex.error)] : null,
        ]));
        const p = ex.progress || {};
        const done = p.done || 0;
        const total = p.total;
        const label = total === null || total === undefined
            ? `${done} ${done === 1 ? 'step' : 'steps'} done (the workflow is no longer loaded)`
            : `${done} of ${total} steps done`;
        progressBox.replaceChildren(
            h('label', { for: 'exec-progress' }, 'Progress'),
            h('progress', { id: 'exec-progress', max: String(total || Math.max(done, 1)), value: String(done), 'aria-valuetext': label }),
            h('span', { class: 'progress-text' }, label, running(ex.status) ? ' — updating live' : ''));
        timeline.replaceChildren(...(ex.steps || []).map(stepRun));
        if (!(ex.steps || []).length)
            timeline.append(h('li', { class: 'muted' }, running(ex.status) ? 'No step has started yet.' : 'No step ran.'));
        const failed = lastFailedStep(ex);
        fromFailed.hidden = !failed;
        if (failed) {
            fromFailed.dataset.step = failed;
            fromFailed.textContent = `Replay from the failed step “${failed}”`;
        }
        fromStart.disabled = running(ex.status);
        fromFailed.disabled = running(ex.status);
        if (lastStatus && lastStatus !== ex.status)
            announce(`Execution ${shortId(ex.id)} ${ex.status}.`);
        lastStatus = ex.status;
    }
    paint();

    eventBox.addEventListener('toggle', async () => {
        if (!eventBox.open || eventBox.dataset.loaded)
            return;
        eventBox.dataset.loaded = '1';
        try {
            const { data } = await api(`/api/events/${enc(ex.event_id)}`, { signal: view.signal });
            eventBox.append(jsonBlock(data, 'The event'));
        } catch (e) {
            eventBox.append(errorBox(e));
        }
    });

    if (!running(ex.status))
        return null;
    // live: the lifecycle stream when the daemon has one, else a poll every 2 s
    return follow(async () => {
        const { data } = await api(`/api/executions/${enc(id)}`, { signal: view.signal });
        ex = data;
        paint();
        return running(ex.status);
    }, { pollMs: 2000, relevant: (ev) => ev.raw.includes(id) });
}
