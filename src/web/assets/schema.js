// The schema browser: schemas → tables and views (list_tables) → columns, keys and indexes (describe_table), with a
// filter on names and comments that also finds tables by column name (search_tables).

import { h, clear, formatBytes, formatCount, announce } from './dom.js';

const KIND_LABEL = {
  table: 'table',
  view: 'view',
  materialized_view: 'mat. view',
  foreign_table: 'foreign',
  partitioned_table: 'partitioned',
};

export class SchemaBrowser {
  /**
   * @param {HTMLElement} treeHost where the tree goes
   * @param {HTMLElement} detailHost where a table's description goes
   * @param {{ call: (tool: string, args: object) => Promise<any>, has: (tool: string) => boolean, onQuery: (sql: string) => void }} api
   */
  constructor(treeHost, detailHost, searchInput, api) {
    this.treeHost = treeHost;
    this.detailHost = detailHost;
    this.search = searchInput;
    this.api = api;
    this.tables = [];
    this.columnHits = new Map();
    let timer;
    this.search.addEventListener('input', () => {
      this.renderTree();
      clearTimeout(timer);
      timer = setTimeout(() => this.searchColumns(), 300);
    });
  }

  async load() {
    clear(this.treeHost, h('p', { class: 'muted' }, 'Loading tables…'));
    const result = await this.api.call('list_tables', { limit: 5000 });
    this.tables = result.tables || [];
    this.truncated = result.truncated;
    this.renderTree();
  }

  async searchColumns() {
    const term = this.search.value.trim();
    const hadHits = this.columnHits.size > 0;
    this.columnHits = new Map();
    if (term.length < 2 || !this.api.has('search_tables')) {
      if (hadHits) this.renderTree();
      return;
    }
    try {
      const result = await this.api.call('search_tables', { term, limit: 200 });
      if (this.search.value.trim() !== term) return;
      for (const match of result.matches || []) {
        if (match.matched_on !== 'column_name') continue;
        const key = `${match.schema}.${match.table}`;
        if (!this.columnHits.has(key)) this.columnHits.set(key, []);
        this.columnHits.get(key).push(match.column);
      }
      this.renderTree();
    } catch {
      // The name filter still works without column matches.
    }
  }

  renderTree() {
    const term = this.search.value.trim().toLowerCase();
    const bySchema = new Map();
    let shown = 0;
    for (const table of this.tables) {
      const key = `${table.schema}.${table.name}`;
      const hits = this.columnHits.get(key);
      const matches = !term || table.name.toLowerCase().includes(term) || (table.comment || '').toLowerCase().includes(term) || hits;
      if (!matches) continue;
      shown += 1;
      if (!bySchema.has(table.schema)) bySchema.set(table.schema, []);
      bySchema.get(table.schema).push({ table, hits });
    }
    if (bySchema.size === 0) {
      clear(this.treeHost, h('p', { class: 'muted' }, term ? `No table, view or column matches “${term}”.` : 'No tables are visible to this role.'));
      return;
    }
    const schemas = [...bySchema.entries()].map(([schema, entries]) =>
      h(
        'details',
        { class: 'schema', open: true },
        h('summary', {}, h('span', { class: 'schema-name' }, schema), h('span', { class: 'badge' }, String(entries.length))),
        h(
          'ul',
          { class: 'table-list' },
          entries.map(({ table, hits }) =>
            h(
              'li',
              {},
              h(
                'button',
                {
                  type: 'button',
                  class: 'table-item',
                  'data-table': `${table.schema}.${table.name}`,
                  title: table.comment || null,
                  onclick: (event) => this.describe(table, event.currentTarget),
                },
                h('span', { class: 'table-name' }, table.name),
                h('span', { class: `kind kind-${table.kind}` }, KIND_LABEL[table.kind] || table.kind),
                hits ? h('span', { class: 'hit' }, `column ${hits.join(', ')}`) : null,
              ),
            ),
          ),
        ),
      ),
    );
    clear(
      this.treeHost,
      schemas,
      this.truncated ? h('p', { class: 'warning' }, 'Only the first 5,000 relations are listed; use the filter.') : null,
    );
    announce(`${shown} tables and views`);
  }

  async describe(table, button) {
    for (const b of this.treeHost.querySelectorAll('.table-item[aria-current]')) b.removeAttribute('aria-current');
    button?.setAttribute('aria-current', 'true');
    clear(this.detailHost, h('p', { class: 'muted' }, `Describing ${table.schema}.${table.name}…`));
    let d;
    try {
      d = await this.api.call('describe_table', { schema: table.schema, table: table.name });
    } catch (err) {
      clear(this.detailHost, h('p', { class: 'error', role: 'alert' }, err.message));
      return;
    }
    const pk = new Set(d.primary_key?.columns || []);
    const fkColumns = new Map();
    for (const fk of d.foreign_keys || []) for (const c of fk.columns) fkColumns.set(c, `${fk.referenced_schema}.${fk.referenced_table}(${fk.referenced_columns.join(', ')})`);
    const unique = new Set((d.unique_constraints || []).flatMap((u) => u.columns || []));
    const quoted = (name) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`);
    const qualified = `${quoted(d.schema)}.${quoted(d.name)}`;
    const section = (heading, body) => (body ? h('section', { class: 'detail-section' }, h('h3', {}, heading), body) : null);
    const table_ = (heads, rows) => h('div', { class: 'table-scroll' }, h('table', { class: 'data' }, h('thead', {}, h('tr', {}, heads.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows)));
    const columns = table_(
      ['#', 'column', 'type', 'null', 'default', 'keys', 'comment'],
      (d.columns || []).map((c) =>
        h(
          'tr',
          {},
          h('td', { class: 'num' }, String(c.position)),
          h('th', { scope: 'row' }, h('code', {}, c.name)),
          h('td', {}, h('code', {}, c.data_type)),
          h('td', {}, c.nullable ? 'yes' : h('strong', {}, 'not null')),
          h('td', {}, c.default ? h('code', {}, c.default) : c.identity ? h('span', { class: 'muted' }, `identity (${c.identity.replace('_', ' ')})`) : c.generated ? h('code', {}, c.generated) : ''),
          h(
            'td',
            {},
            pk.has(c.name) ? h('span', { class: 'key key-pk', title: 'primary key' }, 'PK') : null,
            fkColumns.has(c.name) ? h('span', { class: 'key key-fk', title: `references ${fkColumns.get(c.name)}` }, `FK → ${fkColumns.get(c.name)}`) : null,
            unique.has(c.name) ? h('span', { class: 'key', title: 'unique' }, 'UQ') : null,
          ),
          h('td', { class: 'comment' }, c.comment || ''),
        ),
      ),
    );
    const fks = (d.foreign_keys || []).length ? h('ul', {}, d.foreign_keys.map((fk) => h('li', {}, h('code', {}, fk.name), ': ', h('code', {}, fk.definition)))) : null;
    const refs = (d.referenced_by || []).length
      ? h('ul', {}, d.referenced_by.map((r) => h('li', {}, h('code', {}, `${r.schema}.${r.table}(${(r.columns || []).join(', ')})`), ' → ', h('code', {}, `(${(r.referenced_columns || []).join(', ')})`), h('span', { class: 'muted' }, ` ${r.name}`))))
      : null;
    const indexes = (d.indexes || []).length
      ? table_(['index', 'definition', 'size'], d.indexes.map((i) => h('tr', {}, h('th', { scope: 'row' }, h('code', {}, i.name), i.primary ? h('span', { class: 'key key-pk' }, 'PK') : i.unique ? h('span', { class: 'key' }, 'unique') : null, i.valid === false ? h('span', { class: 'warning' }, 'invalid') : null), h('td', {}, h('code', {}, i.definition)), h('td', { class: 'num' }, i.size || ''))))
      : null;
    const checks = (d.check_constraints || []).length ? h('ul', {}, d.check_constraints.map((c) => h('li', {}, h('code', {}, c.name), ': ', h('code', {}, c.definition)))) : null;
    clear(
      this.detailHost,
      h(
        'div',
        { class: 'table-detail', 'data-testid': 'table-detail' },
        h('header', { class: 'detail-head' },
          h('h2', { tabindex: '-1', id: 'detail-title' }, h('span', { class: 'muted' }, `${d.schema}.`), d.name, ' ', h('span', { class: `kind kind-${d.kind}` }, KIND_LABEL[d.kind] || d.kind)),
          h('p', { class: 'muted' }, [d.row_estimate != null ? `≈ ${formatCount(d.row_estimate)} rows` : null, table.total_bytes != null ? formatBytes(table.total_bytes) : null, d.owner ? `owner ${d.owner}` : null].filter(Boolean).join(' · ')),
          d.comment ? h('p', {}, d.comment) : null,
          h('div', { class: 'actions' },
            h('button', { type: 'button', class: 'primary', onclick: () => this.api.onQuery(`SELECT *\nFROM ${qualified}\nLIMIT 100`) }, 'Query in SQL editor'),
            h('button', { type: 'button', onclick: () => this.api.onQuery(`SELECT count(*)\nFROM ${qualified}`) }, 'Count rows'),
          ),
        ),
        section('Columns', columns),
        section('Foreign keys', fks),
        section('Referenced by', refs),
        section('Indexes', indexes),
        section('Checks', checks),
        d.view_definition ? section('View definition', h('pre', { class: 'raw' }, d.view_definition)) : null,
      ),
    );
    this.detailHost.querySelector('#detail-title')?.focus();
  }
}
