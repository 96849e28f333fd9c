// The pgmcp web client: connects to an MCP server over Streamable HTTP and offers its tools as a console — server
// facts, every tool as a form, a schema browser, and a SQL editor with results, charts and plans.

import { McpClient, HttpError, RpcError, toolValue } from './mcp.js';
import { h, $, clear, announce, download, copyText, pretty, formatCount } from './dom.js';
import { explainRefusal } from './auth.js';
import { toolForm } from './form.js';
import { SchemaBrowser } from './schema.js';
import { SqlEditor, lineAndColumn } from './sql.js';
import { ResultGrid, toCsv, toTsv, toJsonRecords } from './results.js';
import { ResultChart } from './chart.js';
import { planView } from './plan.js';
import { ChatPanel } from './chat.js';

const HISTORY_KEY = 'pgmcp.history';
const HISTORY_MAX = 50;
const THEME_KEY = 'pgmcp.theme';
const DEFAULT_SQL = 'SELECT * FROM information_schema.tables\nWHERE table_schema NOT IN (\'pg_catalog\', \'information_schema\')\nLIMIT 50';

/** A tool result with isError: its structured error ({error, sqlstate, message, position, reason, ...}). */
class ToolFailure extends Error {
  constructor(value) {
    super(value?.message || value?.reason || value?.error || 'the tool failed');
    this.value = value || {};
  }
}

const state = {
  client: null,
  tools: [],
  lastExchange: null,
  result: null,
  busy: false,
};

// ---------- theme ----------

function applyTheme(theme) {
  if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const label = theme === 'light' ? 'Light' : theme === 'dark' ? 'Dark' : 'Auto';
  $('#theme-label').textContent = label;
  $('#theme').setAttribute('aria-label', `Colour theme: ${theme === 'light' || theme === 'dark' ? label.toLowerCase() : 'follow the system'} (change)`);
  state.chart?.draw();
}

function setupTheme() {
  applyTheme(localStorage.getItem(THEME_KEY));
  $('#theme').addEventListener('click', () => {
    const order = [null, 'light', 'dark'];
    const current = localStorage.getItem(THEME_KEY);
    const next = order[(order.indexOf(current) + 1) % order.length];
    if (next) localStorage.setItem(THEME_KEY, next);
    else localStorage.removeItem(THEME_KEY);
    applyTheme(next);
  });
}

// ---------- tabs ----------

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab, focus = true) => {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute('aria-selected', String(selected));
      t.tabIndex = selected ? 0 : -1;
      document.getElementById(t.getAttribute('aria-controls')).hidden = !selected;
    }
    if (focus) tab.focus();
    if (tab.id === 'tab-sql') state.chart?.draw();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => select(tab));
    tab.addEventListener('keydown', (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (!(event.key in moves)) return;
      event.preventDefault();
      select(tabs[(moves[event.key] + tabs.length) % tabs.length]);
    });
  });
  state.selectTab = (id) => select(document.getElementById(id), false);
}

// ---------- status ----------

function setStatus(text, kind = 'idle') {
  const status = $('#status');
  status.textContent = text;
  status.dataset.state = kind;
  if (kind === 'ok') status.dataset.connected = text;
}

function recordExchange(exchange) {
  state.lastExchange = exchange;
}

function rawText(exchange) {
  if (!exchange) return '';
  let response = exchange.response ?? exchange.responseText;
  if (typeof response === 'string') {
    try {
      response = JSON.parse(response);
    } catch {
      // Shown as the server sent it.
    }
  }
  return `→ POST ${state.client?.url ?? ''}\n${pretty(exchange.request)}\n\n← ${exchange.status} ${exchange.contentType} (${exchange.ms} ms)\n${typeof response === 'string' ? response : pretty(response)}`;
}

// ---------- calling tools ----------

function hasTool(name) {
  return state.tools.some((t) => t.name === name);
}

/** Calls a tool; resolves with its structured value, rejects with ToolFailure, HttpError or RpcError. */
async function call(name, args) {
  const result = await state.client.callTool(name, args);
  const value = toolValue(result);
  if (result.isError) throw new ToolFailure(value);
  return value;
}

/** The profiles the server offers (the enum of execute_query's `profile` argument), or [] for a single one. */
function offeredProfiles() {
  const schema = state.tools.find((t) => t.name === 'execute_query')?.inputSchema;
  let property = schema?.properties?.profile;
  if (property?.$ref?.startsWith('#/$defs/')) property = schema.$defs?.[property.$ref.slice(8)];
  return Array.isArray(property?.enum) ? property.enum.map(String) : [];
}

/** Calls a tool on the chosen profile (the SQL editor, the schema browser and the server panel share it). */
function callOnProfile(name, args) {
  const tool = state.tools.find((t) => t.name === name);
  const takesProfile = Boolean(tool?.inputSchema?.properties?.profile);
  return call(name, state.profile && takesProfile ? { ...args, profile: state.profile } : args);
}

function setupProfiles() {
  const profiles = offeredProfiles();
  const picker = $('#profile-picker');
  picker.hidden = profiles.length < 2;
  const remembered = sessionStorage.getItem('pgmcp.profile');
  state.profile = profiles.length < 2 ? null : profiles.includes(remembered) ? remembered : profiles[0];
  clear($('#profile'), profiles.map((p) => h('option', { value: p, selected: p === state.profile }, p)));
}

async function switchProfile(profile) {
  state.profile = profile;
  sessionStorage.setItem('pgmcp.profile', profile);
  state.result = null;
  $('#result').hidden = true;
  clear($('#sql-error'));
  clear($('#plan-host'));
  clear($('#schema-detail'), h('p', { class: 'muted' }, 'Choose a table or view to see its columns, keys and indexes.'));
  await Promise.all([renderServer(), loadSchema()]);
  announce(`Profile ${profile}`);
}

function describeFailure(err) {
  if (err instanceof ToolFailure) return err.message;
  if (err instanceof RpcError) return `${err.message} (JSON-RPC error ${err.code})`;
  if (err instanceof HttpError && (err.status === 401 || err.status === 403)) {
    // A token that expired mid-session: the connection form is where a new one goes.
    $('#connection').open = true;
    return `The server refused the token (HTTP ${err.status}${err.wwwAuthenticate?.includes('invalid_token') ? ', invalid_token' : ''}): it may have expired. Paste a new one under Connection and connect again.`;
  }
  if (err instanceof HttpError) return `The server answered ${err.status}: ${err.body || err.message}`;
  return err?.message || String(err);
}

// ---------- connecting ----------

function defaultEndpoint() {
  return new URL('mcp', window.location.href).href;
}

function setupConnect() {
  const url = $('#server-url');
  const token = $('#token');
  url.value = sessionStorage.getItem('pgmcp.url') || defaultEndpoint();
  token.value = sessionStorage.getItem('pgmcp.token') || '';
  $('#connect-form').addEventListener('submit', (event) => {
    event.preventDefault();
    connect();
  });
  $('#forget-token').addEventListener('click', () => {
    token.value = '';
    sessionStorage.removeItem('pgmcp.token');
    // Forgetting means this page sends it no more, not only that it is not shown.
    if (state.client) state.client.token = '';
    announce('Token forgotten');
    token.focus();
  });
}

function sameOrigin(url) {
  try {
    return new URL(url).origin === window.location.origin;
  } catch {
    return false;
  }
}

async function connect() {
  const url = $('#server-url').value.trim();
  const token = $('#token').value.trim();
  const problem = $('#connect-problem');
  clear(problem);
  if (!url) {
    clear(problem, h('p', { class: 'error', role: 'alert' }, 'Enter the MCP endpoint, e.g. ' + defaultEndpoint()));
    return;
  }
  if (!sameOrigin(url)) {
    clear(
      problem,
      h('div', { class: 'refusal', role: 'alert' },
        h('h2', {}, 'This page can only talk to the server that served it'),
        h('p', {}, `Its Content-Security-Policy allows requests to ${window.location.origin} only, so a token typed here can never be sent elsewhere. Open the web client of the other server instead: its address without /mcp.`)),
    );
    return;
  }
  sessionStorage.setItem('pgmcp.url', url);
  if (token) sessionStorage.setItem('pgmcp.token', token);
  else sessionStorage.removeItem('pgmcp.token');
  setStatus('Connecting…', 'busy');
  delete $('#main').dataset.ready;
  $('#connect-button').disabled = true;
  state.client = new McpClient(url, token, recordExchange);
  try {
    const init = await state.client.connect();
    state.init = init;
    state.tools = await state.client.listTools();
  } catch (err) {
    $('#main').hidden = true;
    $('#connection').open = true;
    $('#connection-summary').textContent = 'Connection';
    setStatus('Not connected', 'error');
    if (err instanceof HttpError && (err.status === 401 || (err.status === 403 && err.wwwAuthenticate) || (err.status === 400 && err.wwwAuthenticate))) {
      clear(problem, await explainRefusal(err, Boolean(token)));
    } else if (err instanceof HttpError && err.status === 403) {
      clear(problem, h('div', { class: 'refusal', role: 'alert' }, h('h2', {}, 'The server refused this page'), h('p', {}, `${err.body || 'Forbidden'} — pgmcp checks the Host and Origin headers against its public URL. If it runs behind a proxy, start it with --public-url set to the address in your browser.`)));
    } else if (err instanceof TypeError) {
      clear(problem, h('p', { class: 'error', role: 'alert' }, `Could not reach ${url}: the server is not running, or the network refused the request.`));
    } else {
      clear(problem, h('p', { class: 'error', role: 'alert' }, `Could not connect: ${describeFailure(err)}`));
    }
    return;
  } finally {
    $('#connect-button').disabled = false;
  }
  const server = state.init.serverInfo || {};
  setStatus(`Connected to ${server.name || 'server'} ${server.version || ''} · ${state.init.protocolVersion}`, 'ok');
  setupProfiles();
  $('#main').hidden = false;
  // Once connected the form folds away (it stays one keystroke from reach) so the console gets the room.
  $('#connection').open = false;
  $('#connection-summary').textContent = `Connection: ${url}${token ? ' with a bearer token' : ''} (change)`;
  renderTools();
  await Promise.all([renderServer(), loadSchema()]);
  // For scripts and tests: everything the connection shows is in place.
  $('#main').dataset.ready = 'true';
  announce('Connected');
}

// ---------- server panel ----------

async function renderServer() {
  const host = $('#server-info');
  const server = state.init.serverInfo || {};
  const facts = (pairs) => h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', { 'data-fact': k }, v)]));
  const blocks = [
    h('section', { class: 'card' }, h('h2', {}, 'MCP server'), facts([
      ['Name', server.title ? `${server.title} (${server.name})` : server.name],
      ['Version', server.version],
      ['Protocol', `${state.init.protocolVersion} (initialize handshake${state.client.sessionId ? ', session' : ', stateless'})`],
      ['Endpoint', state.client.url],
      ['Tools', String(state.tools.length)],
    ]), state.init.instructions ? h('p', { class: 'instructions' }, state.init.instructions) : null),
  ];
  let info = null;
  if (hasTool('server_info')) {
    try {
      info = await callOnProfile('server_info', {});
    } catch (err) {
      blocks.push(h('p', { class: 'error' }, `server_info failed: ${describeFailure(err)}`));
    }
  }
  if (info) {
    const caller = info.caller || {};
    const who = caller.kind === 'token'
      ? [caller.name, caller.preferred_username, caller.oid && `oid ${caller.oid}`].filter(Boolean).join(' · ') || caller.subject || 'token'
      : caller.kind === 'local' ? 'local (stdio)' : caller.kind === 'anonymous' ? 'anonymous (no authentication)' : '—';
    blocks.push(
      h('section', { class: 'card' }, h('h2', {}, 'Database'), facts([
        ['PostgreSQL', info.server_version],
        ['Database', info.current_database],
        ['Role', info.current_user + (info.session_user !== info.current_user ? ` (logged in as ${info.session_user})` : '')],
        ['Access mode', h('span', { class: `badge mode-${info.access_mode}` }, info.access_mode.replace('_', '-'))],
        ['Profile', info.profile],
        ['TLS', info.ssl ? `${info.ssl_version} ${info.ssl_cipher || ''}` : 'not encrypted'],
        ['Superuser', info.is_superuser ? h('strong', { class: 'warning-text' }, 'yes') : 'no'],
        ['Replica', info.in_recovery ? 'yes (in recovery: reads only)' : 'no'],
        ['Time zone', info.time_zone],
        ['Extensions', (info.extensions || []).map((e) => `${e.name} ${e.version}`).join(', ')],
      ])),
      h('section', { class: 'card' }, h('h2', {}, 'You'), facts([
        ['Caller', h('span', { 'data-testid': 'caller' }, who)],
        ['Kind', caller.app_only ? 'application (app-only token)' : caller.kind === 'token' ? 'user (delegated token)' : caller.kind],
        ['Tenant', caller.tid],
        ['Client app', caller.client_app],
        ['Issuer', caller.issuer],
        ['Roles', (caller.roles || []).join(', ')],
        ['Scopes', (caller.scopes || []).join(', ')],
      ])),
    );
    const mode = info.access_mode === 'read_only' ? 'read-only' : 'read-write';
    setStatus(`Connected to ${server.name || 'server'} ${server.version || ''} · ${state.profile ? `${state.profile}: ` : ''}${info.current_database} · ${mode}${caller.kind === 'token' ? ` · ${who}` : ''}`, 'ok');
  }
  clear(host, blocks);
}

// ---------- tools panel ----------

function annotationBadges(tool) {
  const a = tool.annotations || {};
  return [
    a.readOnlyHint ? h('span', { class: 'badge ok' }, 'read-only') : null,
    a.destructiveHint ? h('span', { class: 'badge danger' }, 'destructive') : null,
    a.idempotentHint ? h('span', { class: 'badge' }, 'idempotent') : null,
    a.openWorldHint ? h('span', { class: 'badge' }, 'open world') : null,
  ];
}

function renderTools() {
  const list = $('#tool-list');
  clear(
    list,
    state.tools.map((tool) =>
      h('li', {}, h('button', { type: 'button', class: 'tool-item', 'data-tool': tool.name, onclick: (e) => showTool(tool, e.currentTarget) },
        h('span', { class: 'tool-name' }, tool.name),
        h('span', { class: 'tool-title muted' }, tool.title || tool.annotations?.title || ''),
      )),
    ),
  );
}

function showTool(tool, button) {
  for (const b of document.querySelectorAll('.tool-item[aria-current]')) b.removeAttribute('aria-current');
  button?.setAttribute('aria-current', 'true');
  const output = h('div', { class: 'tool-output', 'aria-live': 'polite' });
  const raw = h('pre', { class: 'raw' });
  const form = toolForm(tool, async (args) => {
    clear(output, h('p', { class: 'muted' }, `Running ${tool.name}…`));
    try {
      const value = await call(tool.name, args);
      clear(output, h('p', { class: 'ok-text' }, `${tool.name} succeeded`), valueView(value));
    } catch (err) {
      clear(output, h('div', { class: 'error', role: 'alert' }, h('strong', {}, `${tool.name} failed: `), describeFailure(err), err instanceof ToolFailure ? h('pre', { class: 'raw' }, pretty(err.value)) : null));
    }
    raw.textContent = rawText(state.lastExchange);
  });
  clear(
    $('#tool-detail'),
    h('article', { class: 'tool-detail', 'data-testid': 'tool-detail' },
      h('h2', { tabindex: '-1', id: 'tool-title' }, tool.title || tool.annotations?.title || tool.name, ' ', h('code', { class: 'muted' }, tool.name)),
      h('p', { class: 'badges' }, annotationBadges(tool)),
      h('p', { class: 'description' }, tool.description || ''),
      form,
      output,
      h('details', { class: 'raw-view' }, h('summary', {}, 'Raw JSON-RPC request and response'), raw),
      h('details', { class: 'raw-view' }, h('summary', {}, 'Input schema'), h('pre', { class: 'raw' }, pretty(tool.inputSchema))),
    ),
  );
  $('#tool-title').focus();
}

/** A tool's value: a grid when it is a result set, else JSON. */
function valueView(value) {
  if (value && Array.isArray(value.columns) && Array.isArray(value.rows)) {
    const host = h('div', { class: 'inline-grid' });
    const grid = new ResultGrid(host);
    queueMicrotask(() => grid.show(value.columns, value.rows));
    return h('div', {}, h('p', { class: 'muted' }, `${formatCount(value.row_count ?? value.rows.length)} rows${value.truncated ? ' (truncated)' : ''}`), host);
  }
  return h('pre', { class: 'raw value' }, pretty(value));
}

// ---------- schema ----------

async function loadSchema() {
  if (!hasTool('list_tables')) {
    clear($('#schema-tree'), h('p', { class: 'muted' }, 'This server offers no list_tables tool.'));
    return;
  }
  try {
    await state.schema.load();
  } catch (err) {
    clear($('#schema-tree'), h('p', { class: 'error', role: 'alert' }, describeFailure(err)));
  }
}

// ---------- SQL ----------

function history() {
  try {
    const list = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
    return Array.isArray(list) ? list.filter((x) => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function remember(sql) {
  const list = [sql, ...history().filter((x) => x !== sql)].slice(0, HISTORY_MAX);
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(list));
  } catch {
    // Storage full or disabled: history is a convenience.
  }
  renderHistory();
}

function renderHistory() {
  const list = history();
  clear(
    $('#history'),
    h('option', { value: '' }, list.length ? `History (${list.length})` : 'History (empty)'),
    list.map((sql, i) => h('option', { value: String(i) }, sql.replace(/\s+/g, ' ').slice(0, 80))),
  );
}

const SQLSTATE_CLASSES = {
  '08': 'connection exception', '0A': 'feature not supported', 21: 'cardinality violation', 22: 'data exception',
  23: 'integrity constraint violation', 25: 'invalid transaction state', 28: 'invalid authorization', 40: 'transaction rollback',
  42: 'syntax error or access rule violation', 53: 'insufficient resources', 54: 'program limit exceeded',
  55: 'object not in prerequisite state', 57: 'operator intervention', 58: 'system error', P0: 'PL/pgSQL error', XX: 'internal error',
};

function showSqlError(err, sql) {
  const host = $('#sql-error');
  if (!(err instanceof ToolFailure)) {
    clear(host, h('div', { class: 'sql-problem', role: 'alert', 'data-testid': 'sql-error' }, h('h2', {}, 'The call failed'), h('p', {}, describeFailure(err))));
    return;
  }
  const v = err.value;
  let body;
  if (v.error === 'database') {
    const where = v.position ? lineAndColumn(sql, v.position) : null;
    state.editor.markError(v.position || null);
    body = [
      h('h2', {}, 'PostgreSQL error ', h('code', { class: 'sqlstate', 'data-testid': 'sqlstate' }, v.sqlstate || '?'), v.sqlstate ? h('span', { class: 'muted' }, ` ${SQLSTATE_CLASSES[v.sqlstate.slice(0, 2)] || ''}`) : null),
      h('p', { class: 'message' }, v.message),
      v.detail ? h('p', {}, h('strong', {}, 'Detail: '), v.detail) : null,
      v.hint ? h('p', {}, h('strong', {}, 'Hint: '), v.hint) : null,
      where ? h('p', { 'data-testid': 'error-position' }, `At line ${where.line}, column ${where.column} (character ${v.position}), marked in the editor. `, h('button', { type: 'button', onclick: () => state.editor.revealError() }, 'Go to error')) : null,
    ];
  } else if (v.error === 'rejected') {
    body = [
      h('h2', {}, 'Refused by pgmcp’s read-only guard'),
      h('p', { class: 'message' }, v.reason),
      h('p', { class: 'muted' }, 'The statement never reached the database. pgmcp allows one read-only statement per call (SELECT, VALUES, TABLE, read-only WITH, SHOW, EXPLAIN) unless the profile is configured read_write.'),
    ];
  } else if (v.error === 'timeout') {
    body = [h('h2', {}, 'Cancelled: statement timeout'), h('p', {}, `The statement ran longer than ${v.timeout_ms} ms and was cancelled on the server. Add filters or a LIMIT, or explain it to see why it is slow.`)];
  } else {
    body = [h('h2', {}, `Error: ${v.error || 'tool error'}`), h('p', { class: 'message' }, v.message || v.reason || pretty(v))];
  }
  clear(host, h('div', { class: `sql-problem kind-${v.error}`, role: 'alert', 'data-testid': 'sql-error' }, body));
}

function setBusy(busy, label) {
  state.busy = busy;
  $('#run').disabled = busy;
  $('#explain').disabled = busy;
  if (busy) setStatus(label, 'busy');
}

function currentSql() {
  return state.editor.value.trim();
}

/** Whether the caller may use `tool`; otherwise says so where SQL errors go (a policy can hide tools). */
function offered(tool) {
  if (hasTool(tool)) return true;
  clear($('#sql-error'), h('div', { class: 'sql-problem', role: 'alert', 'data-testid': 'sql-error' }, h('h2', {}, `${tool} is not available`), h('p', {}, `This server does not offer ${tool} to you (tools/list does not include it): the authorization policy may grant you only some tools.`)));
  return false;
}

async function runQuery() {
  const sql = currentSql();
  if (!sql || state.busy || !state.client || !offered('execute_query')) return;
  remember(state.editor.value);
  const args = { sql };
  const limit = $('#limit').value.trim();
  if (limit) args.limit = Number(limit);
  clear($('#sql-error'));
  clear($('#plan-host'));
  state.editor.markError(null);
  setBusy(true, 'Running query…');
  const started = performance.now();
  try {
    const value = await callOnProfile('execute_query', args);
    showResult(value, Math.round(performance.now() - started));
    announce(`${value.row_count} rows`);
  } catch (err) {
    $('#result').hidden = true;
    showSqlError(err, sql);
    announce('The query failed');
  } finally {
    setBusy(false);
    restoreStatus();
    $('#sql-raw').textContent = rawText(state.lastExchange);
  }
}

async function explainQuery() {
  const sql = currentSql();
  if (!sql || state.busy || !state.client || !offered('explain_query')) return;
  remember(state.editor.value);
  clear($('#sql-error'));
  clear($('#plan-host'));
  state.editor.markError(null);
  setBusy(true, 'Explaining…');
  try {
    const value = await callOnProfile('explain_query', { sql, analyze: $('#analyze').checked });
    $('#result').hidden = true;
    clear($('#plan-host'), planView(value));
    announce('Plan shown');
  } catch (err) {
    showSqlError(err, sql);
  } finally {
    setBusy(false);
    restoreStatus();
    $('#sql-raw').textContent = rawText(state.lastExchange);
  }
}

function restoreStatus() {
  const status = $('#status');
  if (status.dataset.state === 'busy') setStatus(status.dataset.connected || 'Connected', 'ok');
}

function showResult(value, ms) {
  state.result = value;
  $('#result').hidden = false;
  const columns = value.columns || [];
  const rows = value.rows || [];
  $('#result-summary').textContent = `${formatCount(value.row_count ?? rows.length)} row${(value.row_count ?? rows.length) === 1 ? '' : 's'} · ${columns.length} column${columns.length === 1 ? '' : 's'} · ${ms} ms`;
  const truncated = $('#truncated');
  truncated.hidden = !value.truncated;
  if (value.truncated) {
    const by = value.truncated_by === 'max_bytes' || value.truncated_by === 'max_result_bytes' ? 'the result size ceiling' : 'the row limit';
    truncated.textContent = `Truncated: more rows exist. Only the first ${formatCount(rows.length)} are shown, cut by ${by}${value.truncated_by ? ` (${value.truncated_by})` : ''}. Aggregate or filter in SQL, or raise the row limit.`;
  }
  state.grid.show(columns, rows);
  const chartable = state.chart.show(columns, rows);
  $('#view-chart').disabled = !chartable;
  $('#view-chart').title = chartable ? '' : 'No numeric column to chart';
  showView(chartable && state.view === 'chart' ? 'chart' : 'table');
}

function showView(view) {
  state.view = view;
  $('#view-table').setAttribute('aria-pressed', String(view === 'table'));
  $('#view-chart').setAttribute('aria-pressed', String(view === 'chart'));
  $('#grid-host').hidden = view !== 'table';
  $('#chart-host').hidden = view !== 'chart';
  if (view === 'chart') state.chart.draw();
  else state.grid.paint();
}

function exportName(ext) {
  const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\..+/, '');
  return `pgmcp-result-${stamp}.${ext}`;
}

function setupSql() {
  state.editor = new SqlEditor($('#editor'), { onRun: runQuery, label: 'SQL query' });
  state.editor.value = sessionStorage.getItem('pgmcp.sql') || history()[0] || DEFAULT_SQL;
  state.editor.textarea.addEventListener('input', () => sessionStorage.setItem('pgmcp.sql', state.editor.value));
  state.grid = new ResultGrid($('#grid-host'));
  state.chart = new ResultChart($('#chart-host'));
  $('#run').addEventListener('click', runQuery);
  $('#explain').addEventListener('click', explainQuery);
  $('#view-table').addEventListener('click', () => showView('table'));
  $('#view-chart').addEventListener('click', () => showView('chart'));
  $('#history').addEventListener('change', (event) => {
    const index = event.target.value;
    if (index === '') return;
    state.editor.value = history()[Number(index)] ?? '';
    event.target.value = '';
    state.editor.textarea.focus();
  });
  $('#download-csv').addEventListener('click', () => {
    if (!state.result) return;
    download(exportName('csv'), toCsv(state.result.columns, state.grid.displayedRows()), 'text/csv;charset=utf-8');
  });
  $('#download-json').addEventListener('click', () => {
    if (!state.result) return;
    download(exportName('json'), `${JSON.stringify(toJsonRecords(state.result.columns, state.grid.displayedRows()), null, 2)}\n`, 'application/json');
  });
  $('#copy-tsv').addEventListener('click', async () => {
    if (!state.result) return;
    const ok = await copyText(toTsv(state.result.columns, state.grid.displayedRows()));
    announce(ok ? 'Copied as tab-separated text' : 'Copy failed');
    $('#copy-tsv').textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => {
      $('#copy-tsv').textContent = 'Copy';
    }, 1500);
  });
  renderHistory();
}

function openInEditor(sql) {
  state.editor.value = sql;
  sessionStorage.setItem('pgmcp.sql', sql);
  state.selectTab('tab-sql');
  state.editor.textarea.focus();
  runQuery();
}

// ---------- start ----------

function start() {
  setupTheme();
  setupTabs();
  setupConnect();
  setupSql();
  $('#profile').addEventListener('change', (event) => switchProfile(event.target.value));
  state.schema = new SchemaBrowser($('#schema-tree'), $('#schema-detail'), $('#schema-search'), {
    call: callOnProfile,
    has: hasTool,
    onQuery: openInEditor,
  });
  state.chat = new ChatPanel({
    // /chat sits beside /mcp on the same server.
    endpoint: () => new URL('chat', state.client?.url || new URL('mcp', window.location.href)).href,
    token: () => state.client?.token || '',
  });
  connect();
}

start();
