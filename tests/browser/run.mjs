#!/usr/bin/env node
// run.mjs - the web console in a real browser: Debian's Chromium driven by
// playwright-core against the real daemon on loopback, with an API key.
//
//   node tests/browser/run.mjs path/to/evhost [--screenshots DIR]
//
// Walks the seed's Step 4 ("User Creates Trigger (UI)") as a user would:
// enter the key, Workflow triggers -> New trigger, pick the timer source and
// see its event types appear, pick timer_fired and generate-report, add a
// condition data.timer_id eq default, see a server validation error next to
// its field, test the draft, save, see it in the list and in /api/triggers,
// switch it off and on, test it, then watch the timer (every 5 s in the
// embedded default) run the workflow: the execution and its step timeline,
// and a replay.  Also: every other page, a key refused and asked again, no
// console errors, no horizontal scrolling at phone width.  Screenshots of
// each page go to DIR (default ./browser-screenshots).
//
// Exit status: 0 passed, 1 failed, 77 skipped (no Chromium or no
// playwright-core: run `npm ci` here), which ctest reports as skipped.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SKIP = 77;
const DEADLINE_MS = 100_000; // ctest's TIMEOUT is larger: we always clean up ourselves
const CHROMIUM = process.env.EVH_CHROMIUM || '/usr/bin/chromium';
// As root in a container, with no network but loopback: no sandbox, and
// none of Chromium's background connections (refused here, and noisy).
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                       '--disable-background-networking', '--disable-component-update', '--disable-sync',
                       '--disable-dev-shm-usage'];
const here = path.dirname(fileURLToPath(import.meta.url));
const started = Date.now();

const args = process.argv.slice(2);
const binArg = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--screenshots');
const bin = binArg ? path.resolve(binArg) : null;
const shotIdx = args.indexOf('--screenshots');
const shotDir = path.resolve(shotIdx >= 0 ? args[shotIdx + 1] : process.env.EVH_SCREENSHOT_DIR || 'browser-screenshots');

function log(msg) {
    const s = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
    process.stdout.write(`[${s}s] ${msg}\n`);
}

if (!bin || !existsSync(bin)) {
    console.error('usage: node tests/browser/run.mjs path/to/evhost [--screenshots DIR]');
    process.exit(2);
}
if (!existsSync(CHROMIUM)) {
    console.log(`browser_console: skipped: ${CHROMIUM} is not installed (apt-get install chromium)`);
    process.exit(SKIP);
}
let chromium;
try {
    ({ chromium } = await import('playwright-core'));
} catch {
    console.log(`browser_console: skipped: playwright-core is not installed (cd ${here} && npm ci)`);
    process.exit(SKIP);
}

// ---- the pure modules of the console, in Node --------------------------------------

const schema = await import('../../host/console/schema.js');
const live = await import('../../host/console/live.js');

function unitChecks() {
    const { events, rest } = live.parseSSE('id: 7\nevent: jobStart\ndata: {"a":\ndata: 1}\n\n: ping\n\nid: 8\ndata: x');
    assert.deepEqual(events, [{ event: 'jobStart', data: '{"a":\n1}', id: '7' }]);
    assert.equal(rest, 'id: 8\ndata: x');
    assert.ok(!schema.opsForType('integer').includes('matches'));
    assert.ok(schema.opsForType('string').includes('starts_with'));
    assert.deepEqual(schema.opsForType('array'), ['contains', 'exists']);
    const cond = { all: [{ field: 'data.n', op: 'gt', value: 3 }, { not: { field: 'metadata.user_id', op: 'in', value: ['a', 'b'] } }] };
    const rows = schema.conditionsToRows(cond);
    assert.deepEqual(schema.rowsToConditions(rows.mode, rows.rows), cond);
    assert.equal(schema.conditionsToRows({ any: [{ all: [] }] }), null); // nested: edited as JSON
    assert.deepEqual(schema.parseValue('1, 2,x', 'integer', 'in'), [1, 2, 'x']);
    assert.equal(schema.parseValue('abc', 'integer', 'eq'), 'abc'); // the daemon says what is wrong
    assert.deepEqual(schema.locateError('conditions.all[1].not.value'), { target: 'row', row: 1, part: 'value' });
    assert.deepEqual(schema.locateError('event_type'), { target: 'event_type' });
    const fields = schema.schemaFields({ properties: { a: { type: 'object', properties: { b: { type: ['string', 'null'] } } } }, required: ['a'] });
    assert.deepEqual(fields.map((f) => [f.path, f.type, f.required]), [['data.a', 'object', true], ['data.a.b', 'string', false]]);
}

// ---- the daemon ------------------------------------------------------------------------

const work = mkdtempSync(path.join(tmpdir(), 'evh-browser-'));
const key = randomBytes(16).toString('hex');
let daemon = null;
let daemonLog = '';
let browser = null;

function startDaemon() {
    const cfg = path.join(work, 'host.yaml');
    // Only what differs from the embedded default: the key, the address,
    // the database in the temp dir.  The default's timer fires every 5 s and
    // its daily-report trigger runs generate-report.
    writeFileSync(cfg, [
        'server:',
        '  listen: "127.0.0.1:0"',
        `  api_keys: [{name: browser-test, key: "${key}"}]`,
        'storage:',
        `  path: "${work}/data/evhost.db"`,
        `data_dir: "${work}/data"`,
        '',
    ].join('\n'));
    daemon = spawn(bin, ['run', '--config', cfg, '--listen', '127.0.0.1:0', '--data-dir', path.join(work, 'data')],
                   { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the daemon did not say "API on ..." within 20 s')), 20000);
        const onData = (chunk) => {
            daemonLog += chunk.toString();
            const m = /API on http:\/\/127\.0\.0\.1:(\d+)\//.exec(daemonLog);
            if (m) {
                clearTimeout(timer);
                resolve(Number(m[1]));
            }
        };
        daemon.stdout.on('data', onData);
        daemon.stderr.on('data', onData);
        daemon.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        daemon.on('exit', (code, sig) => {
            clearTimeout(timer);
            reject(new Error(`the daemon exited (${code ?? sig}) before serving`));
        });
    });
}

async function stopDaemon() {
    if (!daemon || daemon.exitCode !== null || daemon.signalCode !== null)
        return;
    const exited = new Promise((r) => daemon.once('exit', (code, sig) => r(code ?? sig)));
    daemon.kill('SIGTERM');
    const t = setTimeout(() => daemon.kill('SIGKILL'), 5000);
    const status = await exited;
    clearTimeout(t);
    log(`the daemon stopped (exit status ${status})`);
}

// Last resorts: something throws past the finally below, or ctest (or
// Ctrl-C) stops us.  Playwright closes the browser it launched on exit.
process.on('exit', () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null)
        daemon.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'])
    process.on(sig, () => {
        log(`stopped by ${sig}`);
        process.exit(1);
    });

// ---- helpers ---------------------------------------------------------------------------

let base = '';
let hasDeliveries = false;
async function apiGet(p) {
    const res = await fetch(base + p, { headers: { Authorization: `Bearer ${key}` } });
    return { status: res.status, body: await res.json().catch(() => null) };
}

let passed = 0;
let failed = 0;
async function check(name, fn) {
    const t0 = Date.now();
    try {
        await fn();
        passed++;
        log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
        failed++;
        log(`FAIL ${name}: ${e.stack || e}`);
        throw e;
    }
}

rmSync(path.join(shotDir, 'failure.png'), { force: true }); // from an earlier run

async function shot(page, name, opts = {}) {
    mkdirSync(shotDir, { recursive: true });
    const file = path.join(shotDir, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true, animations: 'disabled', ...opts });
    return file;
}

// Wait until the locator's first match has text matching re.
async function waitText(locator, re, timeout) {
    await locator.filter({ hasText: re }).first().waitFor({ state: 'visible', timeout });
}

async function heading(page, re) {
    await waitText(page.locator('main h1'), re);
}

async function optionValues(select) {
    return select.locator('option').evaluateAll((os) => os.map((o) => o.value));
}

// ---- the walk --------------------------------------------------------------------------

async function main() {
    await check('console modules (SSE parser, operators, conditions)', unitChecks);

    let port;
    await check('the daemon starts with an API key on a free port', async () => {
        port = await startDaemon();
        base = `http://127.0.0.1:${port}`;
        assert.equal((await apiGet('/api/triggers')).status, 200);
        assert.equal((await fetch(`${base}/api/triggers`)).status, 401);
        const page = await fetch(`${base}/`);
        assert.equal(page.status, 200, 'the console is public');
        assert.match(page.headers.get('content-security-policy') || '', /default-src 'self'/);
        hasDeliveries = (await apiGet('/api/subscriptions')).status !== 404;
        if (hasDeliveries) {
            // a receiver that is down: one attempt, then a dead letter
            const res = await fetch(`${base}/api/subscriptions`, {
                method: 'POST',
                headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
                body: JSON.stringify({ id: 'browser-dead', url: 'http://127.0.0.1:9/hook', events: ['jobComplete'],
                                       max_attempts: 1, timeout_ms: 1000 }),
            });
            assert.equal(res.status, 201, await res.text());
        }
    });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15000); // a loaded CI machine runs three builds' tests

    // Console errors fail the test, except the API's own 4xx answers that the
    // walk provokes on purpose (a refused key, a refused trigger, features
    // this daemon lacks); Chromium logs each as "Failed to load resource".
    const problems = [];
    const expected = [];
    page.on('console', (m) => {
        if (m.type() !== 'error')
            return;
        const url = m.location().url || '';
        if (/^Failed to load resource: the server responded with a status of (400|401|404|409)\b/.test(m.text()) &&
            url.startsWith(`${base}/api/`)) {
            expected.push(`${m.text().replace(/^.*status of /, '')} ${url.slice(base.length)}`);
            return;
        }
        problems.push(`console error: ${m.text()} (${url})`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.stack || e.message}`));
    page.on('requestfailed', (r) => {
        const why = r.failure() ? r.failure().errorText : '';
        if (!/ERR_ABORTED/.test(why)) // a view left while it was loading
            problems.push(`request failed: ${r.url()} ${why}`);
    });

    const shots = [];
    try {
        await walk(page, context, shots);
    } catch (e) {
        try {
            shots.push(await shot(page, 'failure'));
        } catch {
            /* the page may be gone */
        }
        throw e;
    } finally {
        log(`screenshots: ${shots.join(', ')}`);
        if (expected.length)
            log(`expected API errors seen: ${expected.join('; ')}`);
    }
    await check('no console errors, page errors or failed requests', () => {
        assert.deepEqual(problems, []);
    });
}

async function walk(page, context, shots) {
    let triggerId;

    await check('the page asks for the API key, refuses a wrong one, takes the right one', async () => {
        await page.goto(`${base}/`);
        const dialog = page.getByRole('dialog', { name: 'API key' });
        await dialog.waitFor();
        await page.locator('#key-input').fill('not-the-key');
        await page.locator('#key-input').press('Enter');
        await waitText(page.locator('#key-error'), /refused/);
        assert.equal(await page.locator('#key-input').getAttribute('aria-invalid'), 'true');
        await page.locator('#key-input').fill(key);
        await dialog.getByRole('button', { name: 'Continue' }).click();
        await dialog.waitFor({ state: 'hidden' });
        await heading(page, /Workflow triggers/);
        assert.equal(await page.evaluate(() => sessionStorage.getItem('evhost.apiKey')), key);
    });

    await check('Workflow triggers -> New trigger: the form of the seed', async () => {
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Workflow triggers' }).click();
        await heading(page, /Workflow triggers/);
        await page.getByRole('link', { name: 'New trigger' }).click();
        await heading(page, /New trigger/);
        await page.getByLabel('Name', { exact: true }).fill('Daily Report');
    });

    const source = () => page.getByLabel('Event source');
    const type = () => page.getByLabel('Event type');
    await check('the event source dropdown is filled from /api/event-sources', async () => {
        const values = await optionValues(source());
        assert.ok(values.includes('timer'), `sources offered: ${values}`);
        assert.ok(await type().isDisabled(), 'no event type before a source');
        const label = await source().locator('option[value="timer"]').textContent();
        assert.equal(label, 'Timer');
    });

    await check('picking the timer shows its event types, then timer_fired and generate-report', async () => {
        await source().selectOption('timer');
        await page.waitForFunction(() => {
            const s = document.querySelector('#t-event-type');
            return !s.disabled && [...s.options].some((o) => o.value === 'timer_fired');
        });
        assert.equal(await type().locator('option[value="timer_fired"]').textContent(), 'Timer Fired (timer_fired)');
        await type().selectOption('timer_fired');
        await waitText(page.locator('.type-info'), /interval elapsed|Fields of Timer Fired/);
        await page.getByLabel('Workflow', { exact: false }).first().selectOption('generate-report');
    });

    const row = (i) => page.locator('.cond-row').nth(i);
    await check('a condition: the field picker offers the schema, the operators fit the type', async () => {
        await page.getByRole('button', { name: /Add condition/ }).click();
        const field = row(0).getByLabel('Field', { exact: true });
        const fields = await optionValues(field);
        for (const f of ['data.fired_at', 'data.timer_id', 'data.sequence', 'metadata.user_id'])
            assert.ok(fields.includes(f), `${f} offered (got ${fields})`);
        await field.selectOption('data.sequence');
        let ops = await optionValues(row(0).getByLabel('Operator'));
        assert.ok(ops.includes('gte') && !ops.includes('matches') && !ops.includes('starts_with'), `integer ops: ${ops}`);
        await field.selectOption('data.timer_id');
        ops = await optionValues(row(0).getByLabel('Operator'));
        assert.ok(ops.includes('matches') && ops.includes('starts_with'), `string ops: ${ops}`);
        await row(0).getByLabel('Operator').selectOption('eq');
        await row(0).getByLabel('Value', { exact: true }).fill('default');
    });

    await check('a server validation error shows next to its field', async () => {
        await page.getByRole('button', { name: /Add condition/ }).click();
        await row(1).getByLabel('Field', { exact: true }).selectOption('data.timer_id');
        await row(1).getByLabel('Operator').selectOption('matches');
        const value = row(1).getByLabel('Value', { exact: true });
        await value.fill('(');
        await page.getByRole('button', { name: 'Save', exact: true }).click();
        const errId = `${await value.getAttribute('id')}-err`;
        await waitText(page.locator(`#${errId}`), /invalid regex/);
        assert.equal(await value.getAttribute('aria-invalid'), 'true');
        assert.ok((await value.getAttribute('aria-describedby')).split(' ').includes(errId));
        await waitText(page.locator('.error-summary'), /conditions\.all\[1\]\.value/);
        assert.equal(await page.evaluate(() => document.activeElement.className), 'error-summary');
        const { body } = await apiGet('/api/triggers');
        assert.ok(!body.items.some((t) => t.origin === 'api'), 'nothing was stored');
        shots.push(await shot(page, 'trigger-form-error'));
        await page.getByRole('button', { name: 'Remove condition 2' }).click();
    });

    await check('the test panel runs the draft and shows each clause', async () => {
        const sample = page.getByLabel('Sample event');
        const event = (timerId) => JSON.stringify({ data: { fired_at: '2026-11-25T10:30:00Z', timer_id: timerId, sequence: 3 } }, null, 2);
        await sample.fill(event('nightly'));
        await page.getByRole('button', { name: 'Run test' }).click();
        await page.locator('.clause[data-field="data.timer_id"][data-result="false"]').waitFor();
        await waitText(page.locator('.test-outcome .verdict'), /Would not run/);
        await sample.fill(event('default'));
        await page.getByRole('button', { name: 'Run test' }).click();
        await waitText(page.locator('.test-outcome .verdict'), /Would run/);
        await page.locator('.clause[data-field="data.timer_id"][data-result="true"]').waitFor();
        await waitText(page.locator('.clause[data-field="data.timer_id"]'), /actual "default"/);
        shots.push(await shot(page, 'trigger-new'));
    });

    await check('Save: the trigger is in the list and in /api/triggers', async () => {
        await page.getByRole('button', { name: 'Save', exact: true }).click();
        await heading(page, /Workflow triggers/);
        const { body } = await apiGet('/api/triggers');
        const t = body.items.find((x) => x.origin === 'api' && x.name === 'Daily Report');
        assert.ok(t, 'stored');
        triggerId = t.id;
        assert.equal(t.source, 'timer');
        assert.equal(t.event_type, 'timer_fired');
        assert.equal(t.workflow, 'generate-report');
        assert.equal(t.enabled, true);
        assert.deepEqual(t.conditions, { all: [{ field: 'data.timer_id', op: 'eq', value: 'default' }] });
        const tr = page.locator(`tr[data-id="${triggerId}"]`);
        await tr.waitFor();
        await waitText(tr, /data\.timer_id equals "default"/);
        await waitText(page.locator('main .success'), new RegExp(`created \\(id ${triggerId}\\)`));
        shots.push(await shot(page, 'triggers'));
    });

    await check('its switch turns it off and on (PATCH), by mouse and by keyboard', async () => {
        const sw = page.locator(`tr[data-id="${triggerId}"]`).getByRole('switch');
        assert.equal(await sw.getAttribute('aria-checked'), 'true');
        await sw.click();
        await page.locator(`tr[data-id="${triggerId}"] [role="switch"][aria-checked="false"]`).waitFor();
        assert.equal((await apiGet(`/api/triggers/${triggerId}`)).body.enabled, false);
        await sw.focus();
        await page.keyboard.press('Space');
        await page.locator(`tr[data-id="${triggerId}"] [role="switch"][aria-checked="true"]`).waitFor();
        assert.equal((await apiGet(`/api/triggers/${triggerId}`)).body.enabled, true);
        // a YAML trigger's switch explains instead of acting
        const yaml = page.locator('tr[data-id="daily-report"]').getByRole('switch');
        assert.equal(await yaml.getAttribute('aria-disabled'), 'true');
    });

    await check('the saved trigger’s test panel shows each clause', async () => {
        await page.locator(`tr[data-id="${triggerId}"]`).getByRole('link', { name: 'Daily Report' }).click();
        await heading(page, /Daily Report/);
        const sample = page.getByLabel('Sample event');
        await page.waitForFunction(() => document.querySelector('textarea').value.includes('timer_id'));
        await sample.fill(JSON.stringify({ data: { fired_at: '2026-11-25T10:30:00Z', timer_id: 'default' } }));
        await page.getByRole('button', { name: 'Run test' }).click();
        await page.locator('.clause[data-field="data.timer_id"][data-result="true"]').waitFor();
        await waitText(page.locator('.test-outcome .verdict'), /Would run/);
        shots.push(await shot(page, 'trigger-detail'));
    });

    let execId;
    await check('Executions: the timer ran generate-report through the new trigger', async () => {
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Executions' }).click();
        await heading(page, /Executions/);
        await page.waitForFunction((id) => [...document.querySelectorAll('#f-trigger option')].some((o) => o.value === id), triggerId);
        await page.getByLabel('Trigger', { exact: true }).selectOption(triggerId);
        await page.getByRole('button', { name: 'Apply' }).click();
        const first = page.locator('main tbody tr').first();
        const until = Date.now() + 20000;
        while (!(await first.isVisible())) {
            assert.ok(Date.now() < until, 'no execution within 20 s (the timer fires every 5 s)');
            await page.waitForTimeout(1000);
            await page.getByRole('button', { name: 'Refresh' }).click();
        }
        await waitText(first, /generate-report/);
        execId = await first.getAttribute('data-id');
        assert.ok(page.url().includes(`trigger=${triggerId}`));
        shots.push(await shot(page, 'executions'));
        await first.getByRole('link').first().click();
        await heading(page, /Execution/);
    });

    await check('the execution’s step timeline, progress and outputs', async () => {
        await page.locator('main h1 .badge[data-state="succeeded"]').waitFor({ timeout: 15000 });
        const steps = await page.locator('.timeline > li').evaluateAll((ls) => ls.map((l) => `${l.dataset.step}:${l.dataset.status}`));
        assert.deepEqual(steps, ['announce:succeeded', 'summary:succeeded']);
        await waitText(page.locator('.progress-text'), /2 of 2 steps done/);
        assert.equal(await page.locator('#exec-progress').getAttribute('value'), '2');
        await waitText(page.locator('.timeline li[data-step="announce"]'), /timer default fired at/);
        await waitText(page.locator('.timeline li[data-step="announce"]'), /bytes_logged/);
        shots.push(await shot(page, 'execution'));
    });

    await check('replay from start runs it again and opens the replay', async () => {
        await page.getByRole('button', { name: 'Replay from start' }).click();
        await page.waitForFunction((id) => !location.hash.includes(id) && location.hash.startsWith('#/executions/'), execId);
        await page.locator('main h1 .badge[data-state="succeeded"]').waitFor({ timeout: 15000 });
        await waitText(page.locator('.exec-summary'), new RegExp(execId.slice(0, 8)));
        const replayId = decodeURIComponent(page.url().split('#/executions/')[1]);
        const { body } = await apiGet(`/api/executions/${replayId}`);
        assert.equal(body.replay_of, execId);
        assert.equal(body.status, 'succeeded');
    });

    await check('live: the console follows the daemon’s own lifecycle stream', async () => {
        // live.js against the real GET /api/events/stream (with the key): the
        // timer's next run arrives as lifecycle events
        const got = await page.evaluate(async () => {
            const { follow, streamAvailable } = await import('/console/live.js');
            return new Promise((resolve) => {
                let stop = null;
                const done = (ev) => { window.clearTimeout(timer); window.setTimeout(() => stop(), 0); resolve({ available: streamAvailable(), ev }); };
                const timer = window.setTimeout(() => done(null), 12000);
                stop = follow(async () => true, { relevant: (ev) => {
                    if (ev.json && ev.json.event)
                        done({ type: ev.type, event: ev.json.event, id: ev.id, jobId: ev.json.data.jobId });
                    return false;
                } });
            });
        });
        assert.equal(got.available, true);
        assert.ok(got.ev, 'no lifecycle event within 12 s');
        assert.equal(got.ev.type, got.ev.event);
        assert.match(got.ev.event, /^(job|plugin)(Start|Complete|Error)$/);
        assert.match(got.ev.id, /^[0-9]+$/);
        assert.match(got.ev.jobId, /^[0-9a-f-]{36}$/);
    });

    await check('live: a running execution polls every 2 s without a stream, follows the stream with one', async () => {
        const real = (await apiGet(`/api/executions/${execId}`)).body;
        const running = { ...real, status: 'running', finished_at: null, steps: real.steps.slice(0, 1), progress: { done: 1, total: 2 } };
        let calls = 0;
        let runningFor = 1; // the first this many reads see it running
        await page.route(`**/api/executions/${execId}`, (route) => {
            calls += 1;
            return calls <= runningFor ? route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(running) })
                : route.continue();
        });
        const open = async () => {
            await page.goto('about:blank');
            await page.goto(`${base}/#/executions/${execId}`);
        };
        // no lifecycle stream (whatever this daemon has): a poll every 2 s
        await page.route('**/api/events/stream', (route) => route.fulfill({
            status: 404, contentType: 'application/json',
            body: JSON.stringify({ error: { code: 'not_found', message: 'no such endpoint', details: [] } }) }));
        await open();
        await page.locator('main h1 .badge[data-state="running"]').waitFor();
        await waitText(page.locator('.progress-text'), /1 of 2 steps done — updating live/);
        assert.ok(await page.getByRole('button', { name: 'Replay from start' }).isDisabled());
        shots.push(await shot(page, 'execution-running'));
        await page.locator('main h1 .badge[data-state="succeeded"]').waitFor({ timeout: 5000 });
        await waitText(page.locator('.progress-text'), /^2 of 2 steps done$/);
        assert.equal(calls, 2);
        await page.unroute('**/api/events/stream');
        // a lifecycle stream (docs/API.md, Server-Sent Events): an event naming this
        // execution makes the page read it again, without waiting for a poll.
        // The page also reads it once when the stream opens (what changed
        // before has no event to come), so that read still sees it running.
        calls = 0;
        runningFor = 2;
        let streamed = null;
        await page.route('**/api/events/stream', (route) => {
            streamed = route.request().headers();
            const ev = { event: 'jobComplete', data: { jobId: execId }, timestamp: new Date().toISOString() };
            return route.fulfill({ status: 200, contentType: 'text/event-stream',
                                   body: `: hello\n\nid: 1\nevent: jobComplete\ndata: ${JSON.stringify(ev)}\n\n` });
        });
        await open();
        await page.locator('main h1 .badge[data-state="succeeded"]').waitFor({ timeout: 1900 });
        assert.equal(calls, 3);
        assert.equal(streamed.authorization, `Bearer ${key}`);
        assert.equal(streamed.accept, 'text/event-stream');
        await page.unroute('**/api/events/stream');
        await page.unroute(`**/api/executions/${execId}`);
    });

    await check('event sources: the timer running, its event type as a field table', async () => {
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Event sources' }).click();
        await heading(page, /Event sources/);
        const tr = page.locator('main tbody tr').filter({ hasText: 'Timer' });
        await tr.locator('.badge[data-state="running"]').waitFor();
        shots.push(await shot(page, 'sources'));
        await tr.getByRole('link', { name: 'Timer' }).click();
        await heading(page, /Timer/);
        const table = page.locator('table').filter({ hasText: 'Fields of Timer Fired' });
        await waitText(table.locator('tbody tr'), /data\.timer_id/);
        await waitText(table.locator('tbody tr').filter({ hasText: 'data.sequence' }), /integer/);
        shots.push(await shot(page, 'source'));
    });

    await check('steps and workflows: generate-report’s steps in order with their plugin and config', async () => {
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Steps' }).click();
        await waitText(page.locator('main tbody tr'), /log/);
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Workflows' }).click();
        await page.getByRole('link', { name: 'Generate report' }).click();
        await heading(page, /Generate report/);
        const cards = await page.locator('.step-card h3').allTextContents();
        assert.deepEqual(cards, ['announce uses log', 'summary uses log']);
        await waitText(page.locator('.step-card').first(), /event\.data\.timer_id/);
        shots.push(await shot(page, 'workflow'));
    });

    await check('the Deliveries tab shows exactly when the daemon has /api/subscriptions', async () => {
        assert.equal(await page.locator('#nav-deliveries').isVisible(), hasDeliveries);
    });

    if (hasDeliveries) {
        await check('Deliveries: a dead letter (receiver down) and its Retry button', async () => {
            let dead = [];
            const until = Date.now() + 20000;
            while (!dead.length) {
                assert.ok(Date.now() < until, 'no dead letter within 20 s');
                dead = (await apiGet('/api/deliveries?status=dead&subscription=browser-dead')).body.items || [];
                if (!dead.length)
                    await new Promise((r) => setTimeout(r, 500));
            }
            await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Deliveries' }).click();
            await heading(page, /Deliveries/);
            await waitText(page.locator('main tbody tr').filter({ hasText: 'http://127.0.0.1:9/hook' }), /browser-dead/);
            const table = page.locator('table').filter({ has: page.locator('caption', { hasText: 'Dead letters' }) });
            const row = table.locator('tbody tr').filter({ hasText: String(dead[0].id) }).first();
            await waitText(row, /dead/);
            shots.push(await shot(page, 'deliveries'));
            await row.getByRole('button', { name: /Retry/ }).click();
            await waitText(row, /queued again/);
            const { body } = await apiGet(`/api/deliveries/${dead[0].id}`);
            assert.ok(body.attempt <= 1, `attempt ${body.attempt} after a retry`);
        });
    }

    await check('a key that stops working brings the prompt back, then the page goes on', async () => {
        await page.evaluate(() => sessionStorage.setItem('evhost.apiKey', 'revoked'));
        await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Workflow triggers' }).click();
        const dialog = page.getByRole('dialog', { name: 'API key' });
        await dialog.waitFor();
        await waitText(page.locator('#key-error'), /refused/);
        await page.locator('#key-input').fill(key);
        await page.locator('#key-input').press('Enter');
        await page.locator(`tr[data-id="${triggerId}"]`).waitFor();
    });

    await check('keyboard: the skip link and the navigation are reachable with Tab', async () => {
        await page.goto('about:blank');
        await page.goto(`${base}/#/triggers`); // a fresh load; the key stays in the tab's session storage
        await heading(page, /Workflow triggers/);
        await page.keyboard.press('Tab');
        assert.equal(await page.evaluate(() => document.activeElement.id), 'skip-link',
                     await page.evaluate(() => document.activeElement.outerHTML.slice(0, 200)));
        await page.keyboard.press('Tab');
        await page.keyboard.press('Tab');
        assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Event sources');
        await page.keyboard.press('Enter');
        await heading(page, /Event sources/);
        // the view renders, then moves focus: wait for it rather than race it
        await page.waitForFunction(() => document.activeElement.tagName === 'H1', null,
                                   {timeout: 5000}).catch(() => {});
        assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1', 'focus moves to the new page');
    });

    await check('Edit: the form comes back filled in, and a PUT changes the condition', async () => {
        await page.evaluate((id) => { location.hash = `#/triggers/${id}/edit`; }, triggerId);
        await heading(page, /Edit trigger/);
        await page.waitForFunction(() => document.querySelectorAll('.cond-row').length === 1);
        assert.equal(await page.getByLabel('Name', { exact: true }).inputValue(), 'Daily Report');
        assert.equal(await page.getByLabel('Event source').inputValue(), 'timer');
        assert.equal(await page.getByLabel('Event type').inputValue(), 'timer_fired');
        assert.equal(await row(0).getByLabel('Field', { exact: true }).inputValue(), 'data.timer_id');
        assert.equal(await row(0).getByLabel('Value', { exact: true }).inputValue(), 'default');
        await row(0).getByLabel('Operator').selectOption('starts_with');
        await row(0).getByLabel('Value', { exact: true }).fill('def');
        await page.getByRole('button', { name: 'Save trigger' }).click();
        await waitText(page.locator('main .success'), /saved/);
        await waitText(page.locator('main dl'), /data\.timer_id starts with "def"/);
        const { body } = await apiGet(`/api/triggers/${triggerId}`);
        assert.deepEqual(body.conditions, { all: [{ field: 'data.timer_id', op: 'starts_with', value: 'def' }] });
    });

    await check('phone width (390 px): no sideways scrolling; screenshots', async () => {
        await page.setViewportSize({ width: 390, height: 844 });
        for (const [hash, name] of [['#/triggers', 'phone-triggers'], [`#/executions/${execId}`, 'phone-execution'], ['#/triggers/new?source=timer', 'phone-trigger-new']]) {
            await page.evaluate((h) => { location.hash = h; }, hash);
            await page.locator('main h1').waitFor();
            await page.waitForLoadState('networkidle');
            if (name === 'phone-trigger-new')
                await page.waitForFunction(() => document.querySelector('#t-event-type') && !document.querySelector('#t-event-type').disabled);
            const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
            assert.ok(overflow <= 1, `${hash}: ${overflow}px wider than the screen`);
            shots.push(await shot(page, name));
        }
    });
}

// ---- run, always cleaning up -----------------------------------------------------------

const deadline = setTimeout(async () => {
    log(`FAIL the test took longer than ${DEADLINE_MS / 1000} s`);
    try {
        if (browser)
            await browser.close();
    } finally {
        if (daemon)
            daemon.kill('SIGKILL');
        process.exit(1);
    }
}, DEADLINE_MS);

let code = 0;
try {
    await main();
} catch (e) {
    code = 1;
    if (!failed)
        log(`FAIL ${e.stack || e}`);
    log(`daemon log (last lines):\n${daemonLog.split('\n').slice(-25).join('\n')}`);
} finally {
    if (browser)
        await browser.close().catch(() => {});
    await stopDaemon();
    rmSync(work, { recursive: true, force: true });
    clearTimeout(deadline);
}
console.log(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`browser_console: ${passed} passed, ${failed} failed`);
process.exit(code);
