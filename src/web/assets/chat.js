// The Chat tab: a question goes to POST /chat on this server (which holds the model's key and runs the tools as
// the signed-in caller); the answer comes back as NDJSON events, shown as they arrive. Each tool step can be
// opened; query results get the same table, chart and CSV views as the SQL tab. Stop closes the response, which
// stops the turn on the server.

import { h, $, clear, announce, download, pretty, formatCount } from './dom.js';
import { ResultGrid, toCsv } from './results.js';
import { ResultChart } from './chart.js';

export class ChatPanel {
  /** @param {{ endpoint: () => string, token: () => string }} connection */
  constructor(connection) {
    this.connection = connection;
    this.turns = [];
    this.controller = null;
    this.log = $('#chat-log');
    this.input = $('#chat-input');
    $('#chat-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.ask();
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        this.ask();
      }
    });
    $('#chat-stop').addEventListener('click', () => this.stop());
    $('#chat-export-md').addEventListener('click', () => download(`pgmcp-chat-${stamp()}.md`, this.markdown(), 'text/markdown;charset=utf-8'));
    $('#chat-export-json').addEventListener('click', () => download(`pgmcp-chat-${stamp()}.json`, `${JSON.stringify(this.turns, null, 2)}\n`, 'application/json'));
    $('#chat-new').addEventListener('click', () => {
      this.stop();
      this.turns = [];
      clear(this.log);
      this.input.focus();
    });
  }

  busy(on) {
    $('#chat-send').disabled = on;
    $('#chat-stop').disabled = !on;
  }

  stop() {
    if (this.controller) this.controller.abort();
  }

  async ask() {
    const question = this.input.value.trim();
    if (!question || this.controller) return;
    this.input.value = '';
    const turn = { question, events: [], answer: null, sql: [], stopped: false, error: null };
    const history = this.turns.filter((t) => t.answer).map((t) => ({ question: t.question, answer: t.answer }));
    this.turns.push(turn);
    const view = new TurnView(this.log, question);
    this.controller = new AbortController();
    this.busy(true);
    try {
      const headers = { 'Content-Type': 'application/json', Accept: 'application/x-ndjson' };
      const token = this.connection.token();
      if (token) headers.Authorization = `Bearer ${token}`;
      const response = await fetch(this.connection.endpoint(), {
        method: 'POST',
        headers,
        body: JSON.stringify({ question, history }),
        signal: this.controller.signal,
        credentials: 'omit',
        cache: 'no-store',
      });
      if (!response.ok) {
        const body = await response.text();
        let message = body;
        try {
          message = JSON.parse(body).error || body;
        } catch {
          // not JSON: the text as it is
        }
        if (response.status === 404) message = 'this server has no chat: start pgmcp with a model (--llm-model, or --azure-openai-endpoint and --azure-openai-deployment).';
        throw new Error(`HTTP ${response.status}: ${message}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line) this.apply(turn, view, JSON.parse(line));
        }
      }
    } catch (err) {
      if (err.name === 'AbortError') {
        turn.stopped = true;
        turn.events.push({ type: 'stopped' });
        view.note('Stopped.', 'warning');
        announce('Stopped');
      } else {
        turn.error = err.message;
        view.note(err.message, 'error');
      }
    } finally {
      this.controller = null;
      this.busy(false);
      view.done();
      this.input.focus();
    }
  }

  apply(turn, view, event) {
    if (event.type === 'text' && turn.events.at(-1)?.type === 'text') turn.events.at(-1).delta += event.delta;
    else turn.events.push({ ...event });
    switch (event.type) {
      case 'text': view.text(event.delta); break;
      case 'tool_call': view.call(event); break;
      case 'tool_result': view.result(event); break;
      case 'budget': view.note(`Budget: ${event.used} ${event.budget.replace('_', ' ')} used of ${event.limit}; ${event.budget === 'tokens' ? 'the answer stops here' : 'the model answers with what it has'}.`, 'warning'); break;
      case 'answer':
        turn.answer = event.text;
        turn.sql = event.sql;
        view.answer(event);
        announce('Answered');
        break;
      case 'error': turn.error = event.message; view.note(event.message, 'error'); break;
      case 'stopped': turn.stopped = true; view.note('Stopped.', 'warning'); break;
      default: break;
    }
  }

  markdown() {
    const parts = ['# pgmcp chat', ''];
    for (const turn of this.turns) {
      parts.push(`## ${turn.question}`, '');
      for (const event of turn.events) {
        if (event.type === 'tool_call') {
          const sql = event.arguments?.sql;
          parts.push(`- **${event.name}**${sql ? '' : ` \`${JSON.stringify(event.arguments)}\``}`);
          if (sql) parts.push('', '```sql', sql, '```', '');
        } else if (event.type === 'tool_result') {
          parts.push(`  - ${event.is_error ? `error: ${event.result?.message || event.result?.error || JSON.stringify(event.result)}` : summarize(event.result)}`);
        } else if (event.type === 'budget') {
          parts.push(`- budget: ${event.used} ${event.budget} used of ${event.limit}`);
        }
      }
      parts.push('');
      if (turn.answer) parts.push(turn.answer, '');
      if (turn.stopped) parts.push('_Stopped._', '');
      if (turn.error) parts.push(`_Error: ${turn.error}_`, '');
    }
    return `${parts.join('\n').trim()}\n`;
  }
}

function stamp() {
  return new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
}

function summarize(result) {
  if (result && Array.isArray(result.rows)) return `${formatCount(result.row_count ?? result.rows.length)} rows${result.truncated ? ' (truncated)' : ''}`;
  if (result && Array.isArray(result.tables)) return `${result.tables.length} tables`;
  if (result && Array.isArray(result.columns)) return `${result.columns.length} columns`;
  return 'done';
}

/** One question and everything that happened for it. */
class TurnView {
  constructor(log, question) {
    this.steps = h('div', { class: 'chat-steps' });
    this.prose = h('div', { class: 'chat-answer', 'data-testid': 'chat-answer' });
    this.calls = new Map();
    this.root = h('article', { class: 'chat-turn', 'data-testid': 'chat-turn', 'aria-busy': 'true' },
      h('p', { class: 'chat-question' }, question), this.steps, this.prose);
    log.append(this.root);
    this.root.scrollIntoView({ block: 'end' });
  }

  text(delta) {
    this.prose.textContent += delta;
  }

  call(event) {
    const sql = event.arguments?.sql;
    const body = h('div', { class: 'chat-step-body' },
      sql ? h('pre', { class: 'raw chat-sql' }, sql) : h('pre', { class: 'raw' }, pretty(event.arguments)));
    const status = h('span', { class: 'muted chat-step-status' }, 'running…');
    const step = h('details', { class: 'chat-step', 'data-testid': 'chat-step' },
      h('summary', {}, h('code', {}, event.name), ' ', status), body);
    this.calls.set(event.id, { step, body, status });
    this.steps.append(step);
  }

  result(event) {
    const entry = this.calls.get(event.id);
    if (!entry) return;
    const { step, body, status } = entry;
    if (event.is_error) {
      step.classList.add('failed');
      status.textContent = 'error';
      body.append(h('p', { class: 'error' }, event.result?.message || event.result?.error || JSON.stringify(event.result)));
      return;
    }
    status.textContent = summarize(event.result) + (event.cut_for_model ? ' · the model read part of it' : '');
    const value = event.result;
    if (value && Array.isArray(value.columns) && Array.isArray(value.rows) && value.columns.every((c) => c && c.type !== undefined)) {
      body.append(resultView(value));
    } else {
      body.append(h('details', { class: 'raw-view' }, h('summary', {}, 'Result'), h('pre', { class: 'raw value' }, pretty(value))));
    }
  }

  answer(event) {
    if (!this.prose.textContent) this.prose.textContent = event.text;
    const facts = `${event.tool_calls} tool call${event.tool_calls === 1 ? '' : 's'} · ${formatCount(event.usage?.total_tokens ?? 0)} tokens`;
    this.root.append(h('p', { class: 'muted chat-facts' }, facts));
  }

  note(message, kind) {
    this.root.append(h('p', { class: kind, role: kind === 'error' ? 'alert' : 'status' }, message));
  }

  done() {
    this.root.setAttribute('aria-busy', 'false');
  }
}

/** A query result: a grid, a chart on demand, and CSV, as in the SQL tab. */
function resultView(value) {
  const gridHost = h('div', { class: 'inline-grid' });
  const chartHost = h('div', { hidden: true });
  let chart = null;
  const grid = new ResultGrid(gridHost);
  grid.viewport.dataset.testid = 'chat-grid';
  queueMicrotask(() => grid.show(value.columns, value.rows));
  const tableButton = h('button', { type: 'button', 'aria-pressed': 'true' }, 'Table');
  const chartButton = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Chart');
  const show = (which) => {
    tableButton.setAttribute('aria-pressed', String(which === 'table'));
    chartButton.setAttribute('aria-pressed', String(which === 'chart'));
    gridHost.hidden = which !== 'table';
    chartHost.hidden = which !== 'chart';
    if (which === 'chart') {
      if (!chart) {
        chart = new ResultChart(chartHost);
        chart.canvas.dataset.testid = 'chat-chart';
        if (!chart.show(value.columns, value.rows)) chart.note.textContent = 'No numeric column to chart.';
      }
      chart.draw();
    }
  };
  tableButton.addEventListener('click', () => show('table'));
  chartButton.addEventListener('click', () => show('chart'));
  const csv = h('button', { type: 'button' }, 'CSV');
  csv.addEventListener('click', () => download(`pgmcp-chat-result-${stamp()}.csv`, toCsv(value.columns, grid.displayedRows()), 'text/csv;charset=utf-8'));
  return h('div', { class: 'chat-result' },
    h('div', { class: 'result-bar' },
      h('p', { class: 'result-summary' }, `${formatCount(value.row_count ?? value.rows.length)} rows${value.truncated ? ' (truncated)' : ''}`),
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'Show the result as' }, tableButton, chartButton),
      h('div', { class: 'export', role: 'group', 'aria-label': 'Export' }, csv)),
    gridHost, chartHost);
}
