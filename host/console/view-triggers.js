// view-triggers.js - "when source S emits event type T and these conditions
// hold, run workflow W": the list (enable/disable in place), the New
// trigger form of the seed's Step 4 (source -> its event types -> workflow
// -> conditions -> save), editing, and the dry run on a sample event.
//
// The daemon is the only validator: the form sends what was entered and
// shows each problem of the 400 answer next to the field its path names.

import { api, ApiError } from './api.js';
import {
    announce, badge, clear, crumbs, enc, errorBox, facts, h, jsonBlock, loading, newId, pageHeader, table, time,
} from './dom.js';
import { fieldTable } from './view-plugins.js';
import {
    METADATA_FIELDS, OPS, conditionsToRows, describeClause, describeConditions, locateError, opsForType,
    parseValue, rowsToConditions, sampleData, schemaFields, valueToText,
} from './schema.js';

let flash = null; // {message, id}: said by the list after a save

function originText(t) {
    if (!t.origin || t.origin === 'api')
        return 'API';
    const file = String(t.origin).split('/').pop();
    return h('span', { title: t.origin }, 'file ', h('code', {}, file));
}

// The enable/disable switch (PATCH {"enabled": ...}).  A trigger from a YAML
// file belongs to its file: the switch explains that instead of acting.
export function enabledSwitch(t, onChange) {
    let enabled = t.enabled !== false;
    let busy = false;
    const apiOwned = !t.origin || t.origin === 'api';
    const text = h('span', { class: 'switch-text', 'aria-hidden': 'true' }, enabled ? 'On' : 'Off');
    const btn = h('button', {
        type: 'button', role: 'switch', class: 'switch', 'aria-checked': String(enabled),
        'aria-disabled': apiOwned ? null : 'true',
        title: apiOwned ? null : `Managed in ${t.origin}: edit the file and reload (SIGHUP)`,
        dataset: { trigger: t.id },
    }, h('span', { class: 'switch-track', 'aria-hidden': 'true' }, h('span', { class: 'switch-thumb' })),
    text, h('span', { class: 'sr-only' }, `Enabled: ${t.name || t.id}`));
    btn.addEventListener('click', async () => {
        if (!apiOwned) {
            announce(`“${t.name || t.id}” is managed in ${t.origin}: edit the file and reload the daemon (SIGHUP).`, { error: true });
            return;
        }
        if (busy)
            return;
        busy = true;
        btn.setAttribute('aria-busy', 'true');
        try {
            const { data } = await api(`/api/triggers/${enc(t.id)}`, { method: 'PATCH', body: { enabled: !enabled } });
            enabled = data.enabled !== false;
            btn.setAttribute('aria-checked', String(enabled));
            text.textContent = enabled ? 'On' : 'Off';
            announce(`“${data.name || data.id}” ${enabled ? 'enabled' : 'disabled'}.`);
            if (onChange)
                onChange(data);
        } catch (e) {
            announce(`Could not change “${t.name || t.id}”: ${e.message}`, { error: true });
        } finally {
            busy = false;
            btn.removeAttribute('aria-busy');
        }
    });
    return btn;
}

// ---- list ---------------------------------------------------------------------------

export async function renderTriggerList(view) {
    view.main.append(pageHeader('Workflow triggers', h('a', { href: '#/triggers/new', class: 'button primary' }, 'New trigger')),
                     h('p', { class: 'intro' }, 'When an event source emits an event type and the conditions hold, the trigger runs its workflow.'),
                     loading());
    const { data } = await api('/api/triggers', { signal: view.signal });
    view.main.lastChild.remove();
    const items = data.items || [];
    const columns = [
        { label: 'Name', cell: (t) => h('a', { href: `#/triggers/${enc(t.id)}` }, t.name || t.id) },
        { label: 'Enabled', cell: (t) => enabledSwitch(t) },
        { label: 'When', cell: (t) => [h('a', { href: `#/sources/${enc(t.source)}` }, t.source), ' → ', h('code', {}, t.event_type)] },
        { label: 'Conditions', cell: (t) => h('span', { class: 'conditions' }, describeConditions(t.conditions)) },
        { label: 'Runs workflow', cell: (t) => h('a', { href: `#/workflows/${enc(t.workflow)}` }, t.workflow) },
        { label: 'Defined in', cell: originText },
        { label: 'Status', cell: (t) => (t.in_force === false
            ? [badge('failed', 'not in force'), h('ul', { class: 'problems' }, (t.problems || []).map((p) => h('li', {}, h('code', {}, p.path), ': ', p.reason)))]
            : badge('active', 'in force')) },
    ];
    view.main.append(table(`Triggers (${items.length})`, columns, items, {
        empty: 'No triggers yet. Create one with “New trigger”.',
        rowAttrs: (t) => ({ dataset: { id: t.id }, class: flash && flash.id === t.id ? 'highlight' : null }),
    }));
    if (flash) {
        announce(flash.message);
        view.main.insertBefore(h('p', { class: 'success', role: 'status' }, flash.message), view.main.children[1]);
        flash = null;
    }
}

// ---- the test panel ------------------------------------------------------------------

function clauseResult(node) {
    if (!node || typeof node !== 'object')
        return null;
    const ok = node.result === true;
    const mark = badge(String(ok), ok ? 'true' : 'false');
    if (typeof node.field === 'string') {
        const actual = node.missing ? h('span', { class: 'muted' }, 'field missing')
            : ['actual ', h('code', {}, JSON.stringify(node.actual))];
        return h('li', { class: 'clause', dataset: { field: node.field, result: String(ok) } },
                 mark, ' ', h('code', {}, describeClause(node)), h('span', { class: 'actual' }, ' — ', actual));
    }
    for (const key of ['all', 'any']) {
        if (Array.isArray(node[key]))
            return h('li', { class: 'group' }, mark, ' ', key === 'all' ? 'all of these hold' : 'any of these holds',
                     h('ul', {}, node[key].map(clauseResult)));
    }
    if (node.not)
        return h('li', { class: 'group' }, mark, ' not:', h('ul', {}, clauseResult(node.not)));
    return h('li', {}, jsonBlock(node));
}

export function renderTestResult(r) {
    const check = (ok, text) => h('li', {}, badge(String(!!ok), ok ? 'yes' : 'no'), ' ', text);
    const condOk = r.conditions ? r.conditions.result === true : true;
    return h('div', { class: 'test-outcome' },
             h('p', { class: 'verdict' }, badge(r.would_run ? 'succeeded' : 'failed', r.would_run ? 'Would run' : 'Would not run'),
               ' ', r.would_run ? 'this event would run the workflow.' : 'this event would not run the workflow.'),
             h('ul', { class: 'checks' },
               check(r.source_matches, 'the source matches'),
               check(r.event_type_matches, 'the event type matches'),
               check(condOk, 'the conditions hold'),
               check(r.enabled, 'the trigger is enabled')),
             h('h3', {}, 'Each condition'),
             r.conditions ? h('ul', { class: 'clauses' }, clauseResult(r.conditions))
                 : h('p', { class: 'muted' }, 'No conditions: every event of this type matches.'));
}

// The dry run: a sample event (JSON) and its outcome.  request(event)
// resolves to the API's answer; an ApiError goes to onError (for the form's
// fields) and the sample's own problems are shown under it.
function testPanel({ title, intro, request, onError }) {
    const id = newId('test');
    const sample = h('textarea', { id: `${id}-sample`, rows: '9', spellcheck: 'false', class: 'code',
                                   'aria-describedby': `${id}-help ${id}-err` });
    const err = h('p', { id: `${id}-err`, class: 'field-error', hidden: true });
    const out = h('div', { class: 'test-result', 'aria-live': 'polite' });
    const run = h('button', { type: 'button', class: 'button' }, 'Run test');
    let dirty = false;
    sample.addEventListener('input', () => { dirty = true; });
    const panel = h('section', { class: 'panel test-panel', 'aria-labelledby': `${id}-h` },
                    h('h2', { id: `${id}-h` }, title),
                    h('p', { class: 'help' }, intro),
                    h('label', { for: sample.id }, 'Sample event'),
                    h('p', { id: `${id}-help`, class: 'help' },
                      'JSON: the event’s "data" and, optionally, "metadata" (e.g. {"user_id": "user-123"}). Nothing is stored or run.'),
                    sample, err, h('div', { class: 'actions' }, run), out);
    const showSampleError = (msg) => {
        err.textContent = msg;
        err.hidden = !msg;
        sample.setAttribute('aria-invalid', msg ? 'true' : 'false');
    };
    run.addEventListener('click', async () => {
        showSampleError('');
        let event;
        try {
            event = JSON.parse(sample.value || '{}');
        } catch (e) {
            showSampleError(`Not valid JSON: ${e.message}`);
            sample.focus();
            return;
        }
        if (!event || typeof event !== 'object' || Array.isArray(event)) {
            showSampleError('The sample event must be a JSON object, like {"data": {...}}.');
            return;
        }
        clear(out).append(loading('Testing…'));
        try {
            const r = await request(event);
            clear(out);
            if (r)
                out.append(renderTestResult(r));
        } catch (e) {
            clear(out);
            if (e instanceof ApiError && e.status === 400) {
                // event problems here; the trigger's go to the form
                const shown = onError ? e.details.filter((d) => /^event\b/.test(d.path)) : e.details;
                if (shown.length)
                    showSampleError(shown.map((d) => `${d.path}: ${d.reason}`).join('; '));
                if (onError)
                    onError(e);
                out.append(errorBox(e, 'The test could not run'));
            } else {
                out.append(errorBox(e, 'The test could not run'));
            }
        }
    });
    return {
        el: panel,
        setSample(obj, force) {
            if (dirty && !force)
                return;
            sample.value = JSON.stringify(obj, null, 2);
        },
    };
}

// ---- the form (new and edit) -------------------------------------------------------------

function fieldBlock(label, control, { help, required } = {}) {
    const errId = `${control.id}-err`;
    const helpId = help ? `${control.id}-help` : null;
    control.setAttribute('aria-describedby', [helpId, errId].filter(Boolean).join(' '));
    if (required)
        control.setAttribute('aria-required', 'true');
    const err = h('p', { id: errId, class: 'field-error', hidden: true });
    const wrap = h('div', { class: 'field' },
                   h('label', { for: control.id }, label, required ? h('span', { class: 'req' }, ' (required)') : null),
                   help ? h('p', { id: helpId, class: 'help' }, help) : null, control, err);
    return { wrap, err, control };
}

function setFieldError(block, msg) {
    block.err.textContent = msg || '';
    block.err.hidden = !msg;
    if (msg)
        block.control.setAttribute('aria-invalid', 'true');
    else
        block.control.removeAttribute('aria-invalid');
}

function options(select, items, placeholder) {
    clear(select);
    if (placeholder !== undefined)
        select.append(h('option', { value: '' }, placeholder));
    for (const it of items)
        select.append(h('option', { value: it.value, disabled: it.disabled || false }, it.label));
}

export async function renderTriggerForm(view, editId) {
    const editing = !!editId;
    view.main.append(crumbs([['Workflow triggers', '#/triggers'], [editing ? `Edit ${editId}` : 'New trigger']]),
                     pageHeader(editing ? `Edit trigger ${editId}` : 'New trigger'), loading());
    const [sourcesR, workflowsR, existingR] = await Promise.all([
        api('/api/event-sources', { signal: view.signal }),
        api('/api/workflows', { signal: view.signal }),
        editing ? api(`/api/triggers/${enc(editId)}`, { signal: view.signal }) : Promise.resolve(null),
    ]);
    view.main.lastChild.remove();
    const sources = sourcesR.data.items || [];
    const workflows = workflowsR.data.items || [];
    const existing = existingR ? existingR.data : null;
    if (existing && existing.origin && existing.origin !== 'api') {
        view.main.append(h('p', { class: 'warn' }, `This trigger is defined in ${existing.origin}: edit that file and reload the daemon (SIGHUP).`));
        return;
    }

    let types = []; // the chosen source's event types
    let fields = []; // pickable fields of the chosen event type (+ metadata)
    const rows = [];
    let jsonMode = false;

    const form = h('form', { class: 'trigger-form', novalidate: true });
    const summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', hidden: true });

    const nameB = fieldBlock('Name', h('input', { id: 't-name', type: 'text', autocomplete: 'off', maxlength: '200' }),
                             { help: 'Shown in lists; the trigger’s id is made from it.' });
    const sourceB = fieldBlock('Event source', h('select', { id: 't-source' }),
                               { help: 'Discovered automatically from the plugin folders.', required: true });
    const typeB = fieldBlock('Event type', h('select', { id: 't-event-type', disabled: true }),
                             { help: 'The event types the chosen source declares.', required: true });
    const typeInfo = h('div', { class: 'type-info' });
    const workflowB = fieldBlock('Workflow', h('select', { id: 't-workflow' }),
                                 { help: 'What runs when the trigger matches.', required: true });
    const enabled = h('input', { id: 't-enabled', type: 'checkbox', checked: true, 'aria-describedby': 't-enabled-err' });
    const enabledB = { wrap: h('div', { class: 'field check' }, enabled, h('label', { for: 't-enabled' }, 'Enabled (runs the workflow when an event matches)')),
                       err: h('p', { id: 't-enabled-err', class: 'field-error', hidden: true }), control: enabled };
    enabledB.wrap.append(enabledB.err);

    options(sourceB.control, sources.map((s) => ({
        value: s.id,
        label: (s.name || s.id) + (s.state === 'failed' ? ' (failed to load)' : s.status === 'inactive' ? ' (inactive)' : ''),
        disabled: s.state === 'failed' || s.status === 'inactive',
    })), sources.length ? 'Choose an event source…' : 'No event sources were found');
    options(workflowB.control, workflows.map((w) => ({ value: w.id, label: w.name && w.name !== w.id ? `${w.name} (${w.id})` : w.id })),
            workflows.length ? 'Choose a workflow…' : 'No workflows are loaded');
    options(typeB.control, [], 'Choose an event source first');

    // conditions
    const modeAll = h('input', { type: 'radio', name: 't-mode', id: 't-mode-all', value: 'all', checked: true });
    const modeAny = h('input', { type: 'radio', name: 't-mode', id: 't-mode-any', value: 'any' });
    const modeBox = h('fieldset', { class: 'mode' }, h('legend', {}, 'Run when'),
                      h('label', { for: 't-mode-all', class: 'inline' }, modeAll, ' all conditions hold'),
                      h('label', { for: 't-mode-any', class: 'inline' }, modeAny, ' any condition holds'));
    const rowList = h('ol', { class: 'cond-rows' });
    const addBtn = h('button', { type: 'button', class: 'button' }, '+ Add condition');
    const condErr = h('p', { id: 't-conditions-err', class: 'field-error', hidden: true });
    const condJson = h('textarea', { id: 't-conditions-json', rows: '8', class: 'code', spellcheck: 'false', 'aria-describedby': 't-conditions-err' });
    const condJsonWrap = h('div', { class: 'field', hidden: true },
                           h('label', { for: 't-conditions-json' }, 'Conditions (JSON)'),
                           h('p', { class: 'help' }, 'These conditions nest groups, which the builder does not show: edit them as JSON.'), condJson);
    const condEmpty = h('p', { class: 'help' }, 'No conditions: every event of the chosen type runs the workflow.');
    const condSet = h('fieldset', { class: 'conditions-box' },
                      h('legend', {}, 'Conditions (optional)'),
                      h('p', { class: 'help' }, 'The field picker offers the fields of the chosen event type; the operators fit the field’s type.'),
                      condEmpty, modeBox, rowList, condJsonWrap, condErr, h('div', { class: 'actions' }, addBtn));

    const saveBtn = h('button', { type: 'submit', class: 'button primary' }, editing ? 'Save trigger' : 'Save');
    const formStatus = h('div', { class: 'form-status', 'aria-live': 'polite' });
    form.append(summary, nameB.wrap, sourceB.wrap, typeB.wrap, typeInfo, workflowB.wrap, enabledB.wrap, condSet,
                h('div', { class: 'actions' }, saveBtn, h('a', { href: editing ? `#/triggers/${enc(editId)}` : '#/triggers', class: 'button' }, 'Cancel')),
                formStatus);

    const test = testPanel({
        title: 'Test before saving',
        intro: 'Runs the dry run (POST /api/triggers/test) of the trigger as filled in above against a sample event, and shows the result of each condition.',
        request: async (event) => {
            const ev = { ...event };
            if (sourceB.control.value && ev.source === undefined)
                ev.source = sourceB.control.value;
            if (typeB.control.value && ev.event_type === undefined)
                ev.event_type = typeB.control.value;
            clearErrors();
            const trigger = collect();
            if (!trigger)
                return null; // the conditions' JSON is broken: said next to it
            const { data } = await api('/api/triggers/test', { method: 'POST', body: { trigger, event: ev } });
            return data;
        },
        onError: (e) => showErrors(e.details, 'trigger.'),
    });

    view.main.append(h('div', { class: 'form-layout' }, form, test.el));

    // -- rows
    function fieldOptions(select, current) {
        clear(select);
        const data = fields.filter((f) => f.path.startsWith('data.'));
        if (data.length)
            select.append(h('optgroup', { label: 'Event data' }, data.map((f) => h('option', { value: f.path }, `${f.path} (${f.type || 'any'})`))));
        select.append(h('optgroup', { label: 'Envelope' }, METADATA_FIELDS.map((f) => h('option', { value: f.path }, `${f.path} (${f.type})`))));
        select.append(h('option', { value: '__other__' }, 'Other path…'));
        const known = [...data, ...METADATA_FIELDS].some((f) => f.path === current);
        select.value = current && known ? current : current ? '__other__' : (data[0] || METADATA_FIELDS[0]).path;
        return current && !known;
    }

    function fieldType(path) {
        const f = [...fields, ...METADATA_FIELDS].find((x) => x.path === path);
        return f ? f.type : null;
    }
    function fieldEnum(path) {
        const f = fields.find((x) => x.path === path);
        return f && f.enum ? f.enum : null;
    }

    function addRow(init = {}) {
        const rid = newId('cond');
        const row = { id: rid };
        const fieldSel = h('select', { id: `${rid}-field`, class: 'cond-field' });
        const other = h('input', { id: `${rid}-other`, type: 'text', class: 'cond-other', placeholder: 'metadata.additional_data.ticket', autocomplete: 'off', spellcheck: 'false' });
        const opSel = h('select', { id: `${rid}-op`, class: 'cond-op' });
        const valueSlot = h('div', { class: 'value-slot' });
        const negate = h('input', { type: 'checkbox', id: `${rid}-not`, checked: !!init.negate });
        const remove = h('button', { type: 'button', class: 'button small remove' }, 'Remove');
        const errs = {};
        for (const part of ['field', 'op', 'value', 'row'])
            errs[part] = h('p', { id: `${rid}-${part}-err`, class: 'field-error', hidden: true });
        fieldSel.setAttribute('aria-describedby', `${rid}-field-err`);
        other.setAttribute('aria-describedby', `${rid}-field-err`);
        opSel.setAttribute('aria-describedby', `${rid}-op-err`);
        const otherWrap = h('div', { class: 'field cond-other-wrap', hidden: true }, h('label', { for: other.id }, 'Field path'), other);
        const legend = h('legend', { class: 'sr-only' });
        const li = h('li', { class: 'cond-row', dataset: { row: rid } },
                     h('fieldset', {}, legend,
                       h('div', { class: 'cond-grid' },
                         h('div', { class: 'field' }, h('label', { for: fieldSel.id }, 'Field'), fieldSel, errs.field),
                         h('div', { class: 'field' }, h('label', { for: opSel.id }, 'Operator'), opSel, errs.op),
                         otherWrap,
                         h('div', { class: 'field cond-value-wrap' }, valueSlot, errs.value),
                         h('div', { class: 'cond-foot' },
                           h('div', { class: 'field check' }, negate, h('label', { for: negate.id }, 'Negate (not)')),
                           remove)),
                       errs.row));
        Object.assign(row, { li, fieldSel, other, otherWrap, opSel, valueSlot, negate, remove, errs, legend, value: null, valueText: '' });

        const path = () => (fieldSel.value === '__other__' ? other.value.trim() : fieldSel.value);
        row.path = path;
        const type = () => (fieldSel.value === '__other__' ? null : fieldType(fieldSel.value));

        function renderValue() {
            const op = opSel.value;
            const t = type();
            const kind = op === 'exists' ? 'exists' : t === 'boolean' && (op === 'eq' || op === 'ne') ? 'bool' : 'text';
            // a yes/no choice does not carry over to a text value, or back
            const prev = row.valueKind && row.valueKind !== kind ? '' : row.value ? row.value.value : row.valueText;
            row.valueKind = kind;
            clear(valueSlot);
            const vid = `${rid}-value`;
            let control;
            let help = null;
            if (kind === 'exists') {
                control = h('select', { id: vid }, h('option', { value: 'true' }, 'yes: the field is present'),
                            h('option', { value: 'false' }, 'no: the field is missing'));
                control.value = prev === 'false' || prev === false ? 'false' : 'true';
            } else if (kind === 'bool') {
                control = h('select', { id: vid }, h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
                control.value = String(prev) === 'false' ? 'false' : 'true';
            } else {
                control = h('input', { id: vid, type: 'text', autocomplete: 'off', spellcheck: 'false',
                                       inputmode: (t === 'integer' || t === 'number') && op !== 'in' && op !== 'not_in' ? 'decimal' : null });
                control.value = prev ?? '';
                const en = fieldEnum(path());
                if (en) {
                    const listId = `${rid}-enum`;
                    control.setAttribute('list', listId);
                    valueSlot.append(h('datalist', { id: listId }, en.map((v) => h('option', { value: String(v) }))));
                }
                if (op === 'in' || op === 'not_in')
                    help = 'Several values, separated by commas.';
                else if (op === 'matches')
                    help = 'A POSIX extended regular expression, e.g. ^report-[0-9]+$';
                else if (t === 'integer' || t === 'number')
                    help = t === 'integer' ? 'A whole number.' : 'A number.';
            }
            const helpId = help ? `${rid}-value-help` : null;
            control.setAttribute('aria-describedby', [helpId, `${rid}-value-err`].filter(Boolean).join(' '));
            control.classList.add('cond-value');
            control.addEventListener('input', () => { row.valueText = control.value; });
            control.addEventListener('change', () => { row.valueText = control.value; });
            valueSlot.prepend(h('label', { for: vid }, 'Value'));
            if (help)
                valueSlot.append(h('p', { id: helpId, class: 'help' }, help));
            valueSlot.insertBefore(control, valueSlot.children[1] || null);
            row.value = control;
            row.valueText = control.value;
        }

        function renderOps() {
            const t = type();
            const ops = opsForType(t);
            const cur = opSel.value || init.op;
            clear(opSel);
            for (const op of ops)
                opSel.append(h('option', { value: op }, `${OPS[op]} (${op})`));
            opSel.value = ops.includes(cur) ? cur : ops[0];
            renderValue();
        }

        row.refreshFields = () => {
            const cur = path();
            const isOther = fieldOptions(fieldSel, cur);
            if (isOther)
                other.value = cur;
            otherWrap.hidden = fieldSel.value !== '__other__';
            renderOps();
        };
        fieldSel.addEventListener('change', () => {
            otherWrap.hidden = fieldSel.value !== '__other__';
            if (!otherWrap.hidden)
                other.focus();
            renderOps();
        });
        opSel.addEventListener('change', renderValue);
        remove.addEventListener('click', () => {
            const i = rows.indexOf(row);
            rows.splice(i, 1);
            li.remove();
            relabel();
            announce(`Condition ${i + 1} removed.`);
            (rows[Math.min(i, rows.length - 1)] ? rows[Math.min(i, rows.length - 1)].fieldSel : addBtn).focus();
        });

        row.valueText = init.value === undefined ? '' : valueToText(init.value);
        const isOther = fieldOptions(fieldSel, init.field);
        if (isOther)
            other.value = init.field;
        otherWrap.hidden = fieldSel.value !== '__other__';
        renderOps();
        if (init.op && [...opSel.options].some((o) => o.value === init.op)) {
            opSel.value = init.op;
            renderValue();
        }
        rows.push(row);
        rowList.append(li);
        relabel();
        return row;
    }

    function relabel() {
        rows.forEach((r, i) => {
            r.legend.textContent = `Condition ${i + 1}`;
            r.remove.setAttribute('aria-label', `Remove condition ${i + 1}`);
        });
        modeBox.hidden = rows.length < 2;
        condEmpty.hidden = rows.length > 0 || jsonMode;
    }

    addBtn.addEventListener('click', () => {
        if (jsonMode)
            return;
        const r = addRow();
        r.fieldSel.focus();
        announce(`Condition ${rows.length} added.`);
    });

    // -- source -> event types -> fields
    let typesSeq = 0;
    async function loadTypes(sourceId, wantType) {
        const seq = ++typesSeq;
        const sel = typeB.control;
        setFieldError(typeB, '');
        typeInfo.textContent = '';
        types = [];
        if (!sourceId) {
            sel.disabled = true;
            options(sel, [], 'Choose an event source first');
            setType(null);
            return;
        }
        sel.disabled = true;
        options(sel, [], 'Loading event types…');
        let list;
        try {
            ({ data: { items: list } } = await api(`/api/event-sources/${enc(sourceId)}/events`, { signal: view.signal }));
        } catch (e) {
            if (seq !== typesSeq)
                return;
            options(sel, [], 'Could not load the event types');
            setFieldError(sourceB, e.message);
            return;
        }
        if (seq !== typesSeq)
            return;
        types = list || [];
        options(sel, types.map((t) => ({ value: t.type, label: t.label && t.label !== t.type ? `${t.label} (${t.type})` : t.type })),
                types.length ? 'Choose an event type…' : 'This source declares no event types');
        sel.disabled = !types.length;
        const src = sources.find((s) => s.id === sourceId);
        announce(`${types.length} event ${types.length === 1 ? 'type' : 'types'} for ${src ? src.name || src.id : sourceId}.`);
        const pick = wantType && types.some((t) => t.type === wantType) ? wantType : types.length === 1 ? types[0].type : '';
        sel.value = pick;
        setType(pick || null);
    }

    function setType(typeId) {
        const t = types.find((x) => x.type === typeId) || null;
        fields = t ? schemaFields(t.schema).filter((f) => f.pickable) : [];
        clear(typeInfo);
        if (t) {
            typeInfo.append(t.description ? h('p', { class: 'help' }, t.description) : null,
                            h('details', {}, h('summary', {}, `Fields of ${t.label || t.type}`), fieldTable(`Fields of ${t.label || t.type}`, t.schema)));
            test.setSample({ data: sampleData(t.schema) });
        }
        for (const r of rows)
            r.refreshFields();
    }

    sourceB.control.addEventListener('change', () => { setFieldError(sourceB, ''); loadTypes(sourceB.control.value); });
    typeB.control.addEventListener('change', () => { setFieldError(typeB, ''); setType(typeB.control.value || null); });

    // -- collect and errors
    function collect() {
        const body = {};
        const name = nameB.control.value.trim();
        if (name)
            body.name = name;
        if (sourceB.control.value)
            body.source = sourceB.control.value;
        if (typeB.control.value)
            body.event_type = typeB.control.value;
        if (workflowB.control.value)
            body.workflow = workflowB.control.value;
        body.enabled = enabled.checked;
        if (jsonMode) {
            const text = condJson.value.trim();
            if (text) {
                try {
                    body.conditions = JSON.parse(text);
                } catch (e) {
                    condErr.textContent = `Not valid JSON: ${e.message}`;
                    condErr.hidden = false;
                    condJson.setAttribute('aria-invalid', 'true');
                    condJson.focus();
                    return null;
                }
            }
        } else {
            const mode = modeAny.checked ? 'any' : 'all';
            const list = rows.map((r) => {
                const p = r.path();
                const t = r.fieldSel.value === '__other__' ? null : fieldType(p);
                return { field: p, op: r.opSel.value, value: parseValue(r.value ? r.value.value : '', t, r.opSel.value), negate: r.negate.checked };
            });
            const cond = rowsToConditions(mode, list);
            if (cond)
                body.conditions = cond;
        }
        return body;
    }

    const blocks = { name: nameB, source: sourceB, event_type: typeB, workflow: workflowB, enabled: enabledB };

    function clearErrors() {
        Object.values(blocks).forEach((b) => setFieldError(b, ''));
        for (const r of rows) {
            for (const [part, el] of Object.entries(r.errs)) {
                el.textContent = '';
                el.hidden = true;
                const c = part === 'field' ? (r.fieldSel.value === '__other__' ? r.other : r.fieldSel) : part === 'op' ? r.opSel : part === 'value' ? r.value : null;
                if (c)
                    c.removeAttribute('aria-invalid');
            }
        }
        condErr.textContent = '';
        condErr.hidden = true;
        condJson.removeAttribute('aria-invalid');
        summary.hidden = true;
        clear(summary);
    }

    // Each problem next to its field; all of them in the summary above.
    function showErrors(details, strip = '') {
        const items = [];
        for (const d of details) {
            const path = strip && d.path.startsWith(strip) ? d.path.slice(strip.length) : d.path;
            if (strip && !d.path.startsWith(strip))
                continue; // the test panel shows the event's own problems
            const where = locateError(path);
            let control = null;
            if (blocks[where.target]) {
                const b = blocks[where.target];
                const prev = b.err.hidden ? '' : b.err.textContent + ' ';
                setFieldError(b, prev + d.reason);
                control = b.control;
            } else if (where.target === 'row' && rows[where.row] && !jsonMode) {
                const r = rows[where.row];
                const part = where.part || 'row';
                const el = r.errs[part];
                el.textContent = (el.hidden ? '' : el.textContent + ' ') + d.reason;
                el.hidden = false;
                control = part === 'field' ? (r.fieldSel.value === '__other__' ? r.other : r.fieldSel)
                    : part === 'op' ? r.opSel : part === 'value' ? r.value : r.fieldSel;
                control.setAttribute('aria-invalid', 'true');
            } else if (where.target === 'row' || where.target === 'conditions') {
                condErr.textContent = (condErr.hidden ? '' : condErr.textContent + ' ') + `${path}: ${d.reason}`;
                condErr.hidden = false;
                control = jsonMode ? condJson : addBtn;
            }
            items.push({ d: { path, reason: d.reason }, control });
        }
        if (!items.length)
            return;
        clear(summary).append(h('p', {}, h('strong', {}, `The daemon found ${items.length === 1 ? 'a problem' : `${items.length} problems`}:`)),
                              h('ul', {}, items.map(({ d, control }) => h('li', {},
                                  control ? h('button', { type: 'button', class: 'linklike', onclick: () => control.focus() }, h('code', {}, d.path))
                                      : h('code', {}, d.path), ': ', d.reason))));
        summary.hidden = false;
    }

    form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        clearErrors();
        const body = collect();
        if (!body)
            return;
        saveBtn.setAttribute('aria-busy', 'true');
        formStatus.textContent = 'Saving…';
        try {
            const { data } = editing
                ? await api(`/api/triggers/${enc(editId)}`, { method: 'PUT', body })
                : await api('/api/triggers', { method: 'POST', body });
            flash = { id: data.id, message: `Trigger “${data.name || data.id}” ${editing ? 'saved' : 'created'} (id ${data.id}).` };
            formStatus.textContent = '';
            view.navigate(editing ? `#/triggers/${enc(data.id)}` : '#/triggers');
        } catch (e) {
            formStatus.textContent = '';
            if (e instanceof ApiError && e.status === 400 && e.details.length) {
                showErrors(e.details);
                summary.focus();
            } else {
                clear(summary).append(errorBox(e, 'Not saved'));
                summary.hidden = false;
                summary.focus();
            }
        } finally {
            saveBtn.removeAttribute('aria-busy');
        }
    });

    // -- initial values
    const q = view.query;
    if (existing) {
        nameB.control.value = existing.name && existing.name !== existing.id ? existing.name : '';
        sourceB.control.value = existing.source;
        workflowB.control.value = existing.workflow;
        enabled.checked = existing.enabled !== false;
        await loadTypes(existing.source, existing.event_type);
        const parsed = conditionsToRows(existing.conditions);
        if (parsed) {
            (parsed.mode === 'any' ? modeAny : modeAll).checked = true;
            parsed.rows.forEach((r) => addRow(r));
        } else {
            jsonMode = true;
            condJsonWrap.hidden = false;
            addBtn.hidden = true;
            condJson.value = JSON.stringify(existing.conditions, null, 2);
        }
    } else {
        if (q.get('workflow'))
            workflowB.control.value = q.get('workflow');
        if (q.get('source') && sources.some((s) => s.id === q.get('source'))) {
            sourceB.control.value = q.get('source');
            await loadTypes(q.get('source'), q.get('event_type'));
        }
    }
    relabel();
}

// ---- detail --------------------------------------------------------------------------

export async function renderTriggerDetail(view, id) {
    view.main.append(crumbs([['Workflow triggers', '#/triggers'], [id]]), loading());
    let t;
    try {
        ({ data: t } = await api(`/api/triggers/${enc(id)}`, { signal: view.signal }));
    } catch (e) {
        view.main.lastChild.remove();
        view.main.append(pageHeader(id), errorBox(e));
        return;
    }
    view.main.lastChild.remove();
    view.setTitle(t.name || t.id);
    const apiOwned = !t.origin || t.origin === 'api';
    const actions = [];
    if (apiOwned) {
        actions.push(h('a', { href: `#/triggers/${enc(t.id)}/edit`, class: 'button' }, 'Edit'));
        const del = h('button', { type: 'button', class: 'button danger' }, 'Delete');
        del.addEventListener('click', async () => {
            if (!window.confirm(`Delete the trigger “${t.name || t.id}”? Its executions are kept.`))
                return;
            try {
                await api(`/api/triggers/${enc(t.id)}`, { method: 'DELETE' });
                flash = { id: null, message: `Trigger “${t.name || t.id}” deleted.` };
                view.navigate('#/triggers');
            } catch (e) {
                announce(`Not deleted: ${e.message}`, { error: true });
            }
        });
        actions.push(del);
    }
    view.main.append(pageHeader(t.name || t.id, ...actions));
    if (flash) {
        announce(flash.message);
        view.main.append(h('p', { class: 'success', role: 'status' }, flash.message));
        flash = null;
    }
    const sw = enabledSwitch(t);
    view.main.append(facts([
        ['Enabled', h('span', { class: 'switch-row' }, sw, apiOwned ? null : h('span', { class: 'help' }, ' managed in its file'))],
        ['ID', h('code', {}, t.id)],
        ['Event source', h('a', { href: `#/sources/${enc(t.source)}` }, t.source)],
        ['Event type', h('code', {}, t.event_type)],
        ['Workflow', h('a', { href: `#/workflows/${enc(t.workflow)}` }, t.workflow)],
        ['Conditions', t.conditions ? [h('span', {}, describeConditions(t.conditions)),
            h('details', {}, h('summary', {}, 'as JSON'), jsonBlock(t.conditions, 'Conditions'))] : 'none: every event of this type'],
        ['Defined in', apiOwned ? 'the API (stored in the database)' : h('code', {}, t.origin)],
        ['Created', time(t.created_at)],
        ['Updated', time(t.updated_at)],
        ['In force', t.in_force === false ? badge('failed', 'no') : badge('active', 'yes')],
        t.description ? ['Description', t.description] : null,
    ]));
    if (t.in_force === false && t.problems && t.problems.length)
        view.main.append(h('div', { class: 'error-box', role: 'note' }, h('p', {}, h('strong', {}, 'Not in force: ')),
                                   h('ul', {}, t.problems.map((p) => h('li', {}, h('code', {}, p.path), ': ', p.reason)))));
    view.main.append(h('p', {}, h('a', { href: `#/executions?trigger=${enc(t.id)}` }, 'Executions started by this trigger')));

    const panel = testPanel({
        title: 'Test this trigger',
        intro: 'Runs the dry run (POST /api/triggers/{id}/test) against a sample event: nothing is stored or run. The source and event type default to the trigger’s.',
        request: async (event) => (await api(`/api/triggers/${enc(t.id)}/test`, { method: 'POST', body: event })).data,
    });
    view.main.append(panel.el);
    try {
        const { data } = await api(`/api/event-sources/${enc(t.source)}/events`, { signal: view.signal });
        const type = (data.items || []).find((x) => x.type === t.event_type);
        panel.setSample({ data: sampleData(type ? type.schema : null) });
    } catch {
        panel.setSample({ data: {} });
    }
}
