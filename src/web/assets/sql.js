// The SQL editor: a textarea (so editing, undo, selection and screen readers work as usual) over a highlighted copy
// of its text produced by a small tokenizer, an error mark at PostgreSQL's reported position, and Ctrl/Cmd+Enter.

import { h, clear } from './dom.js';

const KEYWORDS = new Set(
  `all and any array as asc between by case cast collate column constraint cross current_date current_time
current_timestamp current_user default desc distinct else end except exists explain false fetch filter first for
foreign from full group having ilike in inner intersect interval is join last lateral left like limit natural not
null nulls offset on only or order outer over partition primary range recursive references right row rows select
session_user similar some table then ties true union unique user using values verbose view when where window with
within analyze show insert into update set delete merge returning create alter drop truncate grant revoke begin
commit rollback copy do call conflict nothing`.split(/\s+/),
);

/**
 * Splits SQL into tokens {type, text, start}; the texts concatenate to the input exactly.
 * Types: keyword, ident, quoted, string, number, comment, param, operator, space, other.
 */
export function tokenize(sql) {
  const tokens = [];
  let i = 0;
  const push = (type, end) => {
    tokens.push({ type, text: sql.slice(i, end), start: i });
    i = end;
  };
  while (i < sql.length) {
    const c = sql[i];
    const rest = sql.slice(i);
    let m;
    if ((m = /^\s+/.exec(rest))) push('space', i + m[0].length);
    else if (rest.startsWith('--')) {
      const end = sql.indexOf('\n', i);
      push('comment', end === -1 ? sql.length : end);
    } else if (rest.startsWith('/*')) {
      const end = sql.indexOf('*/', i + 2);
      push('comment', end === -1 ? sql.length : end + 2);
    } else if (c === "'" || ((c === 'E' || c === 'e') && sql[i + 1] === "'")) {
      let j = c === "'" ? i + 1 : i + 2;
      while (j < sql.length) {
        if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j += 1;
      }
      push('string', Math.min(j + 1, sql.length));
    } else if ((m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest))) {
      const end = sql.indexOf(m[0], i + m[0].length);
      push('string', end === -1 ? sql.length : end + m[0].length);
    } else if (c === '"') {
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === '"' && sql[j + 1] === '"') j += 2;
        else if (sql[j] === '"') break;
        else j += 1;
      }
      push('quoted', Math.min(j + 1, sql.length));
    } else if ((m = /^\$\d+/.exec(rest))) push('param', i + m[0].length);
    else if ((m = /^(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)/.exec(rest))) push('number', i + m[0].length);
    else if ((m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(rest))) {
      push(KEYWORDS.has(m[0].toLowerCase()) ? 'keyword' : 'ident', i + m[0].length);
    } else if ((m = /^(::|<=|>=|<>|!=|\|\||->>|->|[-+*/<>=~!@#%^&|`?,;().[\]])/.exec(rest))) {
      push('operator', i + m[0].length);
    } else push('other', i + 1);
  }
  return tokens;
}

/** Line and column (1-based) of a 1-based character position. */
export function lineAndColumn(sql, position) {
  const before = sql.slice(0, Math.max(0, position - 1));
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

export class SqlEditor {
  /**
   * @param {HTMLElement} host an empty element to fill
   * @param {{ onRun: () => void, label: string }} options
   */
  constructor(host, { onRun, label }) {
    this.highlight = h('pre', { class: 'sql-highlight', 'aria-hidden': 'true' });
    this.textarea = h('textarea', {
      class: 'sql-input',
      id: 'sql-input',
      spellcheck: 'false',
      autocapitalize: 'off',
      autocomplete: 'off',
      'aria-label': label,
      'aria-describedby': 'sql-keys',
      'data-testid': 'sql-input',
    });
    this.errorAt = null;
    this.host = host;
    host.classList.add('sql-editor');
    host.append(this.highlight, this.textarea);
    this.textarea.addEventListener('input', () => {
      this.errorAt = null;
      this.render();
    });
    this.textarea.addEventListener('scroll', () => this.syncScroll());
    this.textarea.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        onRun();
      }
    });
    this.render();
  }

  get value() {
    return this.textarea.value;
  }

  set value(text) {
    this.textarea.value = text;
    this.errorAt = null;
    this.render();
  }

  /** Marks the token at a 1-based character position (PostgreSQL's error position); null clears. */
  markError(position) {
    this.errorAt = position ? position - 1 : null;
    this.render();
  }

  /** Puts the caret at the error and focuses the editor. */
  revealError() {
    if (this.errorAt === null) return;
    this.textarea.focus();
    this.textarea.setSelectionRange(this.errorAt, this.errorAt);
  }

  render() {
    const sql = this.textarea.value;
    const tokens = tokenize(sql);
    const nodes = [];
    let marked = false;
    for (const token of tokens) {
      const end = token.start + token.text.length;
      const hit = this.errorAt !== null && !marked && this.errorAt >= token.start && this.errorAt < end && token.type !== 'space';
      if (hit) marked = true;
      nodes.push(h('span', { class: `tok-${token.type}${hit ? ' error-mark' : ''}`, 'data-error': hit ? 'true' : null }, token.text));
    }
    if (this.errorAt !== null && !marked) {
      nodes.push(h('span', { class: 'error-mark', 'data-error': 'true' }, ' '));
    }
    // A trailing newline in a <pre> collapses; a space keeps the last line's height equal to the textarea's.
    nodes.push(' ');
    clear(this.highlight, nodes);
    // The editor grows with its text (within bounds), so a query is seen whole without an inner scrollbar.
    const lines = sql.split('\n').length;
    this.host.style.height = `calc(${Math.min(Math.max(lines + 1, 5), 20) * 1.5 * 13.5}px + 1.2rem + 2px)`;
    this.syncScroll();
  }

  syncScroll() {
    this.highlight.scrollTop = this.textarea.scrollTop;
    this.highlight.scrollLeft = this.textarea.scrollLeft;
  }
}
