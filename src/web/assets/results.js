// Query results: a grid that renders only the rows in view (so tens of thousands stay fast), sortable columns, NULL
// distinct from the empty string, and CSV/JSON export of exactly what the server returned.

import { h, clear, cellText } from './dom.js';

const ROW_HEIGHT = 28;
const OVERSCAN = 12;
const NUMERIC_TYPES = new Set(['int2', 'int4', 'int8', 'float4', 'float8', 'numeric', 'oid', 'smallint', 'integer', 'bigint', 'real', 'double precision']);

export function isNumericType(type) {
  return NUMERIC_TYPES.has(String(type || '').toLowerCase());
}

/** A number for charting/sorting from a JSON cell (numeric arrives as an exact decimal string); NaN otherwise. */
export function toNumber(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(value.trim())) {
    return Number(value);
  }
  return NaN;
}

function csvField(value) {
  // As PostgreSQL's COPY ... CSV: NULL is an unquoted empty field, the empty string a quoted one.
  if (value === null || value === undefined) return '';
  if (value === '') return '""';
  const text = cellText(value);
  return /[",\r\n]/.test(text) || /^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** RFC 4180 CSV with a header line; JSON values are their JSON text. */
export function toCsv(columns, rows) {
  const lines = [columns.map((c) => csvField(c.name)).join(',')];
  for (const row of rows) lines.push(row.map(csvField).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** Tab-separated text for pasting into a spreadsheet. */
export function toTsv(columns, rows) {
  const clean = (v) => cellText(v).replace(/[\t\r\n]+/g, ' ');
  return [columns.map((c) => clean(c.name)).join('\t'), ...rows.map((r) => r.map(clean).join('\t'))].join('\n');
}

/** Rows as objects keyed by column name; a repeated name gets a suffix (`id`, `id_2`) so nothing is lost. */
export function toJsonRecords(columns, rows) {
  const seen = new Map();
  const keys = columns.map((c) => {
    const n = (seen.get(c.name) || 0) + 1;
    seen.set(c.name, n);
    return n === 1 ? c.name : `${c.name}_${n}`;
  });
  return rows.map((row) => Object.fromEntries(keys.map((k, i) => [k, row[i] ?? null])));
}

function compare(a, b, numeric) {
  // NULLs sort last in both directions, like ORDER BY ... NULLS LAST.
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  if (numeric) {
    const x = toNumber(a);
    const y = toNumber(b);
    if (!Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  }
  return cellText(a).localeCompare(cellText(b), undefined, { numeric: true });
}

function renderCell(value) {
  if (value === null || value === undefined) return h('span', { class: 'null', title: 'NULL' }, 'NULL');
  if (value === '') return h('span', { class: 'empty', title: 'empty string' }, '""');
  if (typeof value === 'boolean') return h('span', { class: 'bool' }, String(value));
  return cellText(value);
}

export class ResultGrid {
  /** @param {HTMLElement} host */
  constructor(host) {
    this.host = host;
    this.columns = [];
    this.rows = [];
    this.order = [];
    this.sort = null;
    this.viewport = h('div', {
      class: 'grid-viewport',
      tabindex: '0',
      role: 'grid',
      'aria-label': 'Query results',
      'data-testid': 'result-grid',
    });
    this.header = h('div', { class: 'grid-header', role: 'rowgroup' });
    this.body = h('div', { class: 'grid-body', role: 'rowgroup' });
    this.window = h('div', { class: 'grid-window' });
    this.body.append(this.window);
    this.viewport.append(this.header, this.body);
    host.append(this.viewport);
    this.viewport.addEventListener('scroll', () => this.paint());
    this.viewport.addEventListener('keydown', (event) => this.onKey(event));
    new ResizeObserver(() => this.paint()).observe(this.viewport);
  }

  /** Shows a result: `columns` [{name, type}], `rows` arrays in column order. */
  show(columns, rows) {
    this.columns = columns;
    this.rows = rows;
    this.sort = null;
    this.order = rows.map((_, i) => i);
    this.viewport.setAttribute('aria-rowcount', String(rows.length + 1));
    this.viewport.setAttribute('aria-colcount', String(columns.length));
    this.widths = this.measure();
    // Cells are padded by 0.6rem on each side, outside the characters measured.
    this.template = this.widths.map((w) => `calc(${w}ch + 1.2rem)`).join(' ');
    this.renderHeader();
    this.body.style.height = `${rows.length * ROW_HEIGHT}px`;
    this.viewport.scrollTop = 0;
    this.lastRange = null;
    this.paint();
  }

  /** Column widths in characters from the header and a sample of rows, within sensible bounds. */
  measure() {
    const sample = this.rows.slice(0, 300);
    return this.columns.map((c, i) => {
      let width = Math.max(c.name.length + 3, String(c.type || '').length);
      for (const row of sample) width = Math.max(width, Math.min(row[i] === null ? 4 : cellText(row[i]).length, 60) + 1);
      return Math.min(Math.max(width, 4), 61);
    });
  }

  renderHeader() {
    const cells = this.columns.map((column, i) => {
      const direction = this.sort?.index === i ? this.sort.direction : null;
      return h(
        'div',
        {
          role: 'columnheader',
          class: `grid-cell head${isNumericType(column.type) ? ' num' : ''}`,
          'aria-sort': direction === 'asc' ? 'ascending' : direction === 'desc' ? 'descending' : 'none',
          'aria-colindex': i + 1,
        },
        h(
          'button',
          {
            type: 'button',
            class: 'sort',
            title: `Sort by ${column.name}`,
            onclick: () => this.sortBy(i),
          },
          h('span', { class: 'col-name' }, column.name),
          h('span', { class: 'col-type' }, column.type || ''),
          h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, direction === 'asc' ? '▲' : direction === 'desc' ? '▼' : ''),
        ),
      );
    });
    const row = h('div', { role: 'row', class: 'grid-row', 'aria-rowindex': 1 }, cells);
    row.style.gridTemplateColumns = this.template;
    clear(this.header, row);
  }

  sortBy(index) {
    const direction = this.sort?.index === index && this.sort.direction === 'asc' ? 'desc' : 'asc';
    const numeric = isNumericType(this.columns[index].type);
    const sign = direction === 'asc' ? 1 : -1;
    this.order = this.rows.map((_, i) => i);
    this.order.sort((a, b) => {
      const x = this.rows[a][index];
      const y = this.rows[b][index];
      const nullish = (v) => v === null || v === undefined;
      if (nullish(x) || nullish(y)) return compare(x, y, numeric);
      return sign * compare(x, y, numeric) || a - b;
    });
    this.sort = { index, direction };
    // The first rows of the new order are what a sort is for.
    this.viewport.scrollTop = 0;
    this.renderHeader();
    this.header.querySelectorAll('button.sort')[index]?.focus();
    this.lastRange = null;
    this.paint();
  }

  /** The rows in the current display order (sorted or as returned). */
  displayedRows() {
    return this.order.map((i) => this.rows[i]);
  }

  paint() {
    const headerHeight = this.header.offsetHeight;
    const top = Math.max(0, this.viewport.scrollTop - headerHeight);
    const height = this.viewport.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    if (this.lastRange && this.lastRange[0] === first && this.lastRange[1] === last) return;
    this.lastRange = [first, last];
    const rows = [];
    for (let position = first; position < last; position += 1) {
      const data = this.rows[this.order[position]];
      const row = h(
        'div',
        { role: 'row', class: `grid-row${position % 2 ? ' odd' : ''}`, 'aria-rowindex': position + 2 },
        data.map((value, i) =>
          h(
            'div',
            { role: 'gridcell', class: `grid-cell${isNumericType(this.columns[i]?.type) ? ' num' : ''}`, title: typeof value === 'object' && value !== null ? cellText(value) : null },
            renderCell(value),
          ),
        ),
      );
      row.style.gridTemplateColumns = this.template;
      rows.push(row);
    }
    this.window.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    clear(this.window, rows);
  }

  onKey(event) {
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / ROW_HEIGHT) - 1) * ROW_HEIGHT;
    const moves = {
      ArrowDown: ROW_HEIGHT,
      ArrowUp: -ROW_HEIGHT,
      PageDown: page,
      PageUp: -page,
      Home: -Infinity,
      End: Infinity,
    };
    if (event.target !== this.viewport || !(event.key in moves)) return;
    event.preventDefault();
    const delta = moves[event.key];
    this.viewport.scrollTop = delta === Infinity ? this.viewport.scrollHeight : delta === -Infinity ? 0 : this.viewport.scrollTop + delta;
  }
}
