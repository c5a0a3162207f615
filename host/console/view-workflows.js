// view-workflows.js - the workflows in force (GET /api/workflows): their
// steps in order, the plugin each uses and its configuration as the API
// returns it (secrets already redacted to "***" by the daemon).

import { api } from './api.js';
import { crumbs, enc, errorBox, facts, h, jsonBlock, loading, pageHeader, table } from './dom.js';

export async function renderWorkflowList(view) {
    view.main.append(pageHeader('Workflows'),
                     h('p', { class: 'intro' }, 'Pipelines of steps, defined in YAML files (reload with SIGHUP). Triggers start them.'),
                     loading());
    const { data } = await api('/api/workflows', { signal: view.signal });
    view.main.lastChild.remove();
    const items = data.items || [];
    view.main.append(table(`Workflows (${items.length})`, [
        { label: 'Name', cell: (w) => h('a', { href: `#/workflows/${enc(w.id)}` }, w.name || w.id) },
        { label: 'ID', cell: (w) => h('code', {}, w.id) },
        { label: 'Steps', cell: (w) => (w.steps || []).map((s) => s.id).join(' → ') || '—' },
        { label: 'Triggers', cell: (w) => ((w.triggers || []).length ? (w.triggers || []).map((t, i) => [i ? ', ' : '', h('a', { href: `#/triggers/${enc(t)}` }, t)]) : 'none') },
        { label: 'Executions', cell: (w) => h('a', { href: `#/executions?workflow=${enc(w.id)}` }, 'show') },
    ], items, { empty: 'No workflows are loaded.' }));
}

function retryText(r) {
    if (!r || !r.max)
        return 'no retries';
    return `up to ${r.max} ${r.max === 1 ? 'retry' : 'retries'}, ${r.backoff_ms || 0} ms backoff`;
}

export async function renderWorkflowDetail(view, id) {
    view.main.append(crumbs([['Workflows', '#/workflows'], [id]]), loading());
    let w;
    try {
        ({ data: w } = await api(`/api/workflows/${enc(id)}`, { signal: view.signal }));
    } catch (e) {
        view.main.lastChild.remove();
        view.main.append(pageHeader(id), errorBox(e));
        return;
    }
    view.main.lastChild.remove();
    view.setTitle(w.name || w.id);
    view.main.append(pageHeader(w.name || w.id,
                                h('a', { href: `#/executions?workflow=${enc(w.id)}`, class: 'button' }, 'Executions'),
                                h('a', { href: `#/triggers/new?workflow=${enc(w.id)}`, class: 'button' }, 'New trigger for it')));
    view.main.append(facts([
        ['ID', h('code', {}, w.id)],
        ['File', w.file ? h('code', {}, w.file) : '—'],
        ['Version', w.version ? h('code', { title: 'first 16 hex digits of the SHA-256 of the file' }, w.version) : '—'],
        ['On error', w.on_error ? h('a', { href: `#/workflows/${enc(w.on_error)}` }, w.on_error) : 'nothing more (the execution fails)'],
        ['Triggers', (w.triggers || []).length ? (w.triggers || []).map((t, i) => [i ? ', ' : '', h('a', { href: `#/triggers/${enc(t)}` }, t)]) : 'none'],
    ]));
    const steps = w.steps || [];
    view.main.append(h('h2', {}, `Steps (${steps.length}), in order`));
    view.main.append(h('ol', { class: 'steps' }, steps.map((s) => h('li', { class: 'step-card' },
        h('h3', {}, h('code', {}, s.id), ' uses ', h('a', { href: `#/steps/${enc(s.uses)}` }, s.uses)),
        facts([
            ['Timeout', s.timeout_ms ? `${s.timeout_ms} ms` : 'none'],
            ['Retry', retryText(s.retry)],
            ['On error', s.on_error || 'stop'],
        ], 'facts compact'),
        h('h4', {}, 'Configuration'),
        s.with && Object.keys(s.with).length ? jsonBlock(s.with, `Configuration of step ${s.id}`) : h('p', { class: 'muted' }, 'none')))));
    view.main.append(h('p', { class: 'help' }, 'Values under keys that look secret (token, password, authorization, …) and ${…} references are shown as "***".'));
}
