// app.js - the evhost web console: routing (#/triggers, #/executions/<id>,
// ...), the API key prompt and the navigation.  Every view is a function
// that fills <main> from the public REST API; see docs/console.md.

import { hasEndpoint, isAbort, setKey, setKeyPrompt } from './api.js';
import { clear, errorBox, h } from './dom.js';
import { renderDeliveries } from './view-deliveries.js';
import { renderExecutionDetail, renderExecutionList } from './view-executions.js';
import { renderPluginDetail, renderPluginList } from './view-plugins.js';
import { renderTriggerDetail, renderTriggerForm, renderTriggerList } from './view-triggers.js';
import { renderWorkflowDetail, renderWorkflowList } from './view-workflows.js';

const main = document.getElementById('main');

// ---- the API key -----------------------------------------------------------------

const dialog = document.getElementById('key-dialog');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('key-input');
const keyError = document.getElementById('key-error');
let keyResolve = null;

function askForKey(reason) {
    return new Promise((resolve) => {
        keyResolve = resolve;
        keyError.hidden = reason !== 'refused';
        keyError.textContent = reason === 'refused' ? 'The daemon refused this key (401). Check it and try again.' : '';
        keyInput.setAttribute('aria-invalid', reason === 'refused' ? 'true' : 'false');
        keyInput.value = '';
        if (!dialog.open)
            dialog.showModal();
        keyInput.focus();
    });
}

keyForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = keyInput.value.trim();
    if (!key) {
        keyError.textContent = 'Enter the API key (server.api_keys in host.yaml, or EVH_API_KEYS).';
        keyError.hidden = false;
        keyInput.setAttribute('aria-invalid', 'true');
        keyInput.focus();
        return;
    }
    setKey(key);
    dialog.close();
    const resolve = keyResolve;
    keyResolve = null;
    if (resolve)
        resolve();
});
// The console cannot work without the key: Escape does not dismiss the prompt.
dialog.addEventListener('cancel', (ev) => ev.preventDefault());
setKeyPrompt(askForKey);

document.getElementById('forget-key').addEventListener('click', () => {
    setKey('');
    route(); // the next API call asks again, when the daemon needs a key
});

// ---- routing ---------------------------------------------------------------------

let current = null; // {controller, cleanup}
let firstRoute = true;

const ROUTES = [
    [/^sources$/, 'sources', (v) => renderPluginList(v, 'sources')],
    [/^sources\/([^/]+)$/, 'sources', (v, id) => renderPluginDetail(v, 'sources', id)],
    [/^steps$/, 'steps', (v) => renderPluginList(v, 'steps')],
    [/^steps\/([^/]+)$/, 'steps', (v, id) => renderPluginDetail(v, 'steps', id)],
    [/^triggers$/, 'triggers', renderTriggerList],
    [/^triggers\/new$/, 'triggers', (v) => renderTriggerForm(v, null)],
    [/^triggers\/([^/]+)\/edit$/, 'triggers', renderTriggerForm],
    [/^triggers\/([^/]+)$/, 'triggers', renderTriggerDetail],
    [/^workflows$/, 'workflows', renderWorkflowList],
    [/^workflows\/([^/]+)$/, 'workflows', renderWorkflowDetail],
    [/^executions$/, 'executions', renderExecutionList],
    [/^executions\/([^/]+)$/, 'executions', renderExecutionDetail],
    [/^deliveries$/, 'deliveries', renderDeliveries],
];

const TITLES = {
    sources: 'Event sources', steps: 'Steps', triggers: 'Workflow triggers', workflows: 'Workflows',
    executions: 'Executions', deliveries: 'Deliveries',
};

function parseHash() {
    const raw = window.location.hash.replace(/^#\/?/, '');
    const qi = raw.indexOf('?');
    const path = qi < 0 ? raw : raw.slice(0, qi);
    const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
    return { path, query };
}

function navigate(hash) {
    if (window.location.hash === hash)
        route();
    else
        window.location.hash = hash;
}

async function route() {
    const { path, query } = parseHash();
    if (path === '') {
        window.location.replace('#/triggers');
        return;
    }
    if (current) {
        current.controller.abort();
        if (typeof current.cleanup === 'function')
            current.cleanup();
    }
    const controller = new AbortController();
    const me = { controller, cleanup: null };
    current = me;

    let match = null;
    for (const [re, section, fn] of ROUTES) {
        const m = re.exec(path);
        if (m) {
            match = { section, fn, args: m.slice(1).map(decodeURIComponent) };
            break;
        }
    }
    for (const a of document.querySelectorAll('nav.main-nav a')) {
        if (match && a.dataset.nav === match.section)
            a.setAttribute('aria-current', 'page');
        else
            a.removeAttribute('aria-current');
    }
    clear(main);
    const view = {
        main,
        query,
        signal: controller.signal,
        navigate,
        setTitle: (t) => { if (current === me) document.title = `${t} · evhost`; },
    };
    if (!match) {
        document.title = 'Not found · evhost';
        main.append(h('h1', { tabindex: '-1', class: 'page-title' }, 'Not found'),
                    h('p', {}, 'No page here. ', h('a', { href: '#/triggers' }, 'Go to the workflow triggers'), '.'));
        return;
    }
    document.title = `${TITLES[match.section]} · evhost`;
    try {
        me.cleanup = await match.fn(view, ...match.args);
    } catch (e) {
        if (isAbort(e) || current !== me)
            return;
        main.append(errorBox(e));
    }
    if (current !== me) {
        if (typeof me.cleanup === 'function')
            me.cleanup();
        return;
    }
    // a new page: move focus to its heading (not on first load, and not
    // when the view already put it somewhere, e.g. an error summary)
    if (!firstRoute && (document.activeElement === document.body || !main.contains(document.activeElement))) {
        const title = main.querySelector('h1');
        if (title && !dialog.open)
            title.focus({ preventScroll: false });
    }
    firstRoute = false;
}

window.addEventListener('hashchange', route);

document.getElementById('skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
});

// Deliveries come with the webhook feature: show the tab once the daemon has it.
async function detectFeatures() {
    const nav = document.getElementById('nav-deliveries');
    if (await hasEndpoint('/api/subscriptions'))
        nav.hidden = false;
}

route().then(detectFeatures);
