// view-plugins.js - event sources and workflow steps: what the daemon found
// in its plugin folders, loaded or not (GET /api/event-sources, /api/steps).

import { api } from './api.js';
import { badge, crumbs, enc, errorBox, facts, h, jsonBlock, loading, pageHeader, table } from './dom.js';
import { METADATA_FIELDS, schemaFields } from './schema.js';

const KINDS = {
    sources: { api: '/api/event-sources', title: 'Event sources', one: 'Event source', hash: '#/sources' },
    steps: { api: '/api/steps', title: 'Steps', one: 'Step', hash: '#/steps' },
};

// The state word, plus "quarantined" when the API says so.
function stateCell(p) {
    const parts = [badge(p.state || 'unknown')];
    if (p.quarantined)
        parts.push(' ', badge('quarantined'));
    if (p.status === 'inactive' && p.state !== 'inactive')
        parts.push(' ', badge('inactive'));
    return parts;
}

export async function renderPluginList(view, kind) {
    const k = KINDS[kind];
    view.main.append(pageHeader(k.title), loading());
    const { data } = await api(k.api, { signal: view.signal });
    const items = data.items || [];
    view.main.lastChild.remove();
    const intro = kind === 'sources'
        ? 'Event sources the daemon discovered in its plugin folders. Triggers pick their event types.'
        : 'Workflow steps the daemon discovered. Workflows use them by id.';
    view.main.append(h('p', { class: 'intro' }, intro));
    const failed = items.filter((p) => p.state === 'failed' || p.quarantined).length;
    if (failed)
        view.main.append(h('p', { class: 'warn', role: 'note' },
                           `${failed} ${failed === 1 ? 'plugin' : 'plugins'} failed to load: see the error in its row.`));
    const columns = [
        { label: 'Name', cell: (p) => h('a', { href: `${k.hash}/${enc(p.id)}` }, p.name || p.id) },
        { label: 'ID', cell: (p) => h('code', {}, p.id) },
        { label: 'Version', cell: (p) => p.version || '—' },
        { label: 'State', cell: stateCell },
    ];
    if (kind === 'sources')
        columns.push({ label: 'Event types', cell: (p) => (p.eventTypes || []).map((t) => t.label || t.type).join(', ') || '—' });
    columns.push({ label: 'Description or error', cell: (p) => (p.error ? h('span', { class: 'error-text' }, p.error) : p.description || '') });
    view.main.append(table(`${k.title} (${items.length})`, columns, items,
                           { empty: kind === 'sources' ? 'No event sources were found.' : 'No steps were found.' }));
}

// A schema as a table of fields: path, type, required, constraints, description.
export function fieldTable(caption, schema, prefix = 'data') {
    if (!schema)
        return h('p', { class: 'muted' }, 'No schema is declared: any object is accepted.');
    const rows = schemaFields(schema, prefix);
    if (!rows.length)
        return h('p', { class: 'muted' }, 'The schema declares no fields.');
    const extra = schema.additionalProperties === false
        ? h('p', { class: 'help' }, 'Only these fields are allowed.') : null;
    return h('div', { class: 'field-table' }, table(caption, [
        { label: 'Field', cell: (f) => h('code', {}, f.path) },
        { label: 'Type', cell: (f) => (f.type ? f.type + (f.itemType ? ` of ${f.itemType}` : '') : 'any') },
        { label: 'Required', cell: (f) => (f.required ? 'yes' : 'no') },
        { label: 'Constraints', cell: (f) => f.constraints || '—' },
        { label: 'Description', cell: (f) => f.description || '—' },
    ], rows), extra);
}

function eventTypeSection(t, showMetadata) {
    const headId = `type-${t.type}`;
    return h('section', { class: 'panel', 'aria-labelledby': headId },
             h('h3', { id: headId }, t.label || t.type, ' ', h('code', { class: 'muted' }, t.type)),
             t.description ? h('p', {}, t.description) : null,
             fieldTable(`Fields of ${t.label || t.type}`, t.schema),
             showMetadata ? h('details', {},
                 h('summary', {}, 'Envelope fields every event has'),
                 table('Envelope fields', [
                     { label: 'Field', cell: (f) => h('code', {}, f.path) },
                     { label: 'Type', cell: (f) => f.type },
                     { label: 'Description', cell: (f) => f.description },
                 ], METADATA_FIELDS)) : null);
}

export async function renderPluginDetail(view, kind, id) {
    const k = KINDS[kind];
    view.main.append(crumbs([[k.title, k.hash], [id]]), loading());
    let p;
    try {
        ({ data: p } = await api(`${k.api}/${enc(id)}`, { signal: view.signal }));
    } catch (e) {
        view.main.lastChild.remove();
        view.main.append(pageHeader(id), errorBox(e));
        return;
    }
    view.main.lastChild.remove();
    view.setTitle(p.name || p.id);
    view.main.append(pageHeader(p.name || p.id, ...stateCell(p)));
    if (p.description)
        view.main.append(h('p', { class: 'intro' }, p.description));
    if (p.error)
        view.main.append(h('div', { class: 'error-box', role: 'note' }, h('p', {}, h('strong', {}, 'Error: '), p.error)));
    view.main.append(facts([
        ['ID', h('code', {}, p.id)],
        ['Version', p.version],
        ['SDK ABI', p.abi],
        ['Manifest status', p.status],
        ['State', p.state],
        kind === 'sources' ? ['Webhook endpoint', p.webhookEndpoint ? h('code', {}, p.webhookEndpoint) : 'none'] : null,
    ]));
    const types = p.eventTypes || [];
    if (kind === 'sources' || types.length) {
        view.main.append(h('h2', {}, kind === 'sources' ? 'Event types' : 'Event types it may emit'));
        if (kind === 'sources')
            view.main.append(h('p', { class: 'help' }, 'Trigger conditions can test these fields; ',
                               h('a', { href: `#/triggers/new?source=${enc(p.id)}` }, 'create a trigger on this source'), '.'));
        if (!types.length)
            view.main.append(h('p', { class: 'muted' }, 'None.'));
        types.forEach((t, i) => view.main.append(eventTypeSection(t, kind === 'sources' && i === 0)));
    }
    view.main.append(h('h2', {}, 'Configuration'),
                     h('p', { class: 'help' }, 'What the plugin accepts in host.yaml (plugins.config). The values in force are never shown: they may hold secrets.'),
                     fieldTable('Configuration fields', p.configSchema, 'config'));
    if (p.configSchema)
        view.main.append(h('details', {}, h('summary', {}, 'Configuration schema as JSON'), jsonBlock(p.configSchema, 'Configuration schema')));
}
