// schema.js - what the console reads out of an event type's JSON schema:
// the fields a trigger condition can test, the operators that fit each
// field's type (the same rules the daemon checks, docs/pipeline.md), a
// sample event, and conditions to and from the form's rows.  No DOM here,
// so the browser test can import it in plain Node.

export const OPS = {
    eq: 'equals',
    ne: 'does not equal',
    gt: 'is greater than',
    gte: 'is at least',
    lt: 'is less than',
    lte: 'is at most',
    in: 'is one of',
    not_in: 'is none of',
    contains: 'contains',
    starts_with: 'starts with',
    ends_with: 'ends with',
    matches: 'matches regex',
    exists: 'exists',
};

// The operators offered for a field of this declared type (null: unknown,
// e.g. a path typed by hand, so everything).  Mirrors op_requirement and
// kind_fits in host/src/triggers.c: ordering operators need numbers or
// strings, starts_with/ends_with/matches strings, contains a string or an
// array; eq/ne/in/not_in/exists apply to anything.
export function opsForType(type) {
    switch (type) {
    case 'string':
        return ['eq', 'ne', 'in', 'not_in', 'contains', 'starts_with', 'ends_with', 'matches',
                'gt', 'gte', 'lt', 'lte', 'exists'];
    case 'integer':
    case 'number':
        return ['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in', 'exists'];
    case 'boolean':
        return ['eq', 'ne', 'exists'];
    case 'array':
        return ['contains', 'exists'];
    case 'object':
        return ['exists'];
    default:
        return Object.keys(OPS);
    }
}

// A property's declared type: "string", ..., or null.  ["string", "null"]
// counts as "string".
export function typeOf(prop) {
    if (!prop || typeof prop !== 'object')
        return null;
    let t = prop.type;
    if (Array.isArray(t))
        t = t.find((x) => x !== 'null') || null;
    if (typeof t === 'string')
        return t;
    if (prop.properties)
        return 'object';
    if (Array.isArray(prop.enum) && prop.enum.length) {
        const v = prop.enum[0];
        return typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'boolean' : 'string';
    }
    return null;
}

// What the constraints say, in words: "1 or more", "one of a, b", ...
function constraints(p) {
    const out = [];
    if (p.format)
        out.push(`format ${p.format}`);
    if (Array.isArray(p.enum))
        out.push(`one of ${p.enum.map((v) => JSON.stringify(v)).join(', ')}`);
    if (p.const !== undefined)
        out.push(`always ${JSON.stringify(p.const)}`);
    if (p.minimum !== undefined)
        out.push(`≥ ${p.minimum}`);
    if (p.exclusiveMinimum !== undefined)
        out.push(`> ${p.exclusiveMinimum}`);
    if (p.maximum !== undefined)
        out.push(`≤ ${p.maximum}`);
    if (p.exclusiveMaximum !== undefined)
        out.push(`< ${p.exclusiveMaximum}`);
    if (p.minLength !== undefined)
        out.push(`at least ${p.minLength} characters`);
    if (p.maxLength !== undefined)
        out.push(`at most ${p.maxLength} characters`);
    if (p.pattern)
        out.push(`matches ${p.pattern}`);
    if (p.minItems !== undefined)
        out.push(`at least ${p.minItems} items`);
    if (p.maxItems !== undefined)
        out.push(`at most ${p.maxItems} items`);
    if (p.default !== undefined)
        out.push(`default ${JSON.stringify(p.default)}`);
    return out.join('; ');
}

// Every field of an object schema, depth first, as
// {path, type, itemType, required, description, constraints, enum, pickable}.
// Nested objects give "data.a.b"; the fields of array items "data.items[].sku"
// (shown in tables, not pickable: a condition needs an index there).
export function schemaFields(schema, prefix = 'data', depth = 0) {
    const out = [];
    if (!schema || typeof schema !== 'object' || !schema.properties || depth > 8)
        return out;
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    for (const [name, prop] of Object.entries(schema.properties)) {
        const path = `${prefix}.${name}`;
        const type = typeOf(prop);
        const itemType = type === 'array' ? typeOf(prop.items) : null;
        out.push({
            path,
            type,
            itemType,
            required: required.has(name),
            description: (prop && prop.description) || '',
            constraints: prop ? constraints(prop) : '',
            enum: prop && Array.isArray(prop.enum) ? prop.enum : null,
            pickable: !prefix.includes('[]'),
        });
        if (type === 'object')
            out.push(...schemaFields(prop, path, depth + 1));
        else if (type === 'array' && prop.items && typeOf(prop.items) === 'object')
            out.push(...schemaFields(prop.items, `${path}[]`, depth + 1));
    }
    return out;
}

// The envelope's metadata (its shape is fixed by the host; see docs/API.md).
export const METADATA_FIELDS = [
    { path: 'metadata.user_id', type: 'string', description: 'Who caused the event, when known', pickable: true },
    { path: 'metadata.timestamp', type: 'string', description: 'When the host accepted the event (RFC 3339)', pickable: true },
    { path: 'metadata.source', type: 'string', description: 'The event source id (always the source)', pickable: true },
    { path: 'metadata.additional_data', type: 'object', description: 'Free-form extra data; test a key inside it with “Other path”', pickable: true },
];

// A plausible value for a property, to start a sample event with.
function sampleValue(prop, name, depth) {
    const type = typeOf(prop);
    if (prop && prop.const !== undefined)
        return prop.const;
    if (prop && Array.isArray(prop.examples) && prop.examples.length)
        return prop.examples[0];
    if (prop && prop.default !== undefined)
        return prop.default;
    if (prop && Array.isArray(prop.enum) && prop.enum.length)
        return prop.enum[0];
    switch (type) {
    case 'string':
        if (prop.format === 'date-time')
            return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
        if (prop.format === 'date')
            return new Date().toISOString().slice(0, 10);
        if (prop.format === 'uri')
            return 'https://example.com/';
        if (prop.format === 'email')
            return 'user@example.com';
        return `example-${name}`;
    case 'integer':
        return prop.minimum !== undefined ? Math.max(prop.minimum, 1) : 1;
    case 'number':
        return prop.minimum !== undefined ? Math.max(prop.minimum, 1) : 1.5;
    case 'boolean':
        return false;
    case 'array':
        return [];
    case 'object':
        return depth < 4 ? sampleObject(prop, depth + 1) : {};
    default:
        return null;
    }
}

function sampleObject(schema, depth) {
    const out = {};
    for (const [name, prop] of Object.entries((schema && schema.properties) || {}))
        out[name] = sampleValue(prop, name, depth);
    return out;
}

export function sampleData(schema) {
    return sampleObject(schema, 0);
}

// ---- conditions <-> the form's rows ----------------------------------------------

// The text a value is edited as: strings as they are, lists comma-separated.
export function valueToText(value) {
    if (value === undefined || value === null)
        return '';
    if (Array.isArray(value))
        return value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
    return typeof value === 'string' ? value : JSON.stringify(value);
}

const NUMBER_RE = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;

// One scalar as typed, for a field of this type.  A number field gets a
// number only when the text is one: anything else is sent as typed, and the
// daemon's answer (shown next to the field) says what is wrong with it.
function parseScalar(text, type) {
    const t = text.trim();
    if (type === 'integer' || type === 'number')
        return NUMBER_RE.test(t) ? Number(t) : text;
    if (type === 'boolean')
        return t === 'true' ? true : t === 'false' ? false : text;
    if (type === 'string')
        return text;
    // unknown type: JSON when it reads as JSON, else the text
    if (NUMBER_RE.test(t) || t === 'true' || t === 'false' || t === 'null' || /^["[{]/.test(t)) {
        try {
            return JSON.parse(t);
        } catch {
            return text;
        }
    }
    return text;
}

export function parseValue(text, type, op) {
    if (op === 'exists')
        return text !== 'false';
    if (op === 'in' || op === 'not_in')
        return String(text).split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => parseScalar(s, type));
    return parseScalar(String(text), type);
}

function isClause(c) {
    return c && typeof c === 'object' && !Array.isArray(c) && typeof c.field === 'string';
}

// {mode: 'all'|'any', rows: [{field, op, value, negate}]}, or null when the
// conditions are richer than one list of clauses (nested groups): the form
// then edits them as JSON.
export function conditionsToRows(cond) {
    if (cond === null || cond === undefined)
        return { mode: 'all', rows: [] };
    let mode = 'all';
    let list;
    if (Array.isArray(cond))
        list = cond;
    else if (isClause(cond))
        list = [cond];
    else if (cond && Array.isArray(cond.all) && Object.keys(cond).length === 1)
        list = cond.all;
    else if (cond && Array.isArray(cond.any) && Object.keys(cond).length === 1) {
        list = cond.any;
        mode = 'any';
    } else if (cond && cond.not && Object.keys(cond).length === 1)
        list = [cond];
    else
        return null;
    const rows = [];
    for (const item of list) {
        if (isClause(item))
            rows.push({ field: item.field, op: item.op, value: item.value, negate: false });
        else if (item && isClause(item.not) && Object.keys(item).length === 1)
            rows.push({ field: item.not.field, op: item.not.op, value: item.not.value, negate: true });
        else
            return null;
    }
    return { mode, rows };
}

// The trigger's "conditions" from the rows (undefined when there are none).
export function rowsToConditions(mode, rows) {
    if (!rows.length)
        return undefined;
    const list = rows.map((r) => {
        const clause = { field: r.field, op: r.op };
        if (r.value !== undefined)
            clause.value = r.value;
        return r.negate ? { not: clause } : clause;
    });
    return { [mode === 'any' ? 'any' : 'all']: list };
}

// "data.size is greater than 1000"
export function describeClause(c) {
    const op = OPS[c.op] || c.op;
    if (c.op === 'exists')
        return `${c.field} ${c.value === false ? 'does not exist' : 'exists'}`;
    return `${c.field} ${op} ${JSON.stringify(c.value)}`;
}

// The conditions in one line, for lists.
export function describeConditions(cond) {
    if (cond === null || cond === undefined)
        return 'every event';
    if (Array.isArray(cond))
        return describeConditions({ all: cond });
    if (isClause(cond))
        return describeClause(cond);
    if (cond.not)
        return `not (${describeConditions(cond.not)})`;
    const key = cond.all ? 'all' : cond.any ? 'any' : null;
    if (!key)
        return JSON.stringify(cond);
    const parts = cond[key].map((c) => (isClause(c) ? describeClause(c) : `(${describeConditions(c)})`));
    return parts.join(key === 'all' ? ' and ' : ' or ');
}

// An error path of a trigger body -> where the form shows it:
// {target: 'name'|'source'|'event_type'|'workflow'|'enabled'|'conditions'|'row'|'other',
//  row, part ('field'|'op'|'value'|null)}.
export function locateError(path) {
    const p = String(path || '');
    const top = ['name', 'source', 'event_type', 'workflow', 'enabled'];
    const first = p.split(/[.[]/)[0];
    if (top.includes(first))
        return { target: first };
    const m = /^conditions\.(all|any)\[(\d+)\](?:\.not)?(?:\.(field|op|value)\b)?/.exec(p);
    if (m)
        return { target: 'row', row: Number(m[2]), part: m[3] || null };
    if (first === 'conditions')
        return { target: 'conditions' };
    return { target: 'other' };
}
