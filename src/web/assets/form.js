// A form generated from a tool's inputSchema (JSON Schema 2020-12 as schemars writes it): strings, numbers and
// integers with bounds, booleans, enums, arrays of enums, and JSON for anything else. Defaults are shown (as the
// placeholder, the preselected choice and a note) and left to the server to apply; required fields are marked; only
// fields the person filled (or that differ from the default) are sent.

import { h } from './dom.js';

let formCounter = 0;

function resolve(schema, root) {
  if (schema && schema.$ref && schema.$ref.startsWith('#/$defs/')) {
    return { ...root.$defs?.[schema.$ref.slice(8)], description: schema.description ?? root.$defs?.[schema.$ref.slice(8)]?.description };
  }
  return schema || {};
}

/** The non-null type of a property (`["integer", "null"]` → integer), and whether null is allowed. */
function typeOf(schema) {
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  const nonNull = types.filter((t) => t && t !== 'null');
  return { type: nonNull[0] || (schema.enum ? 'string' : 'json'), nullable: types.includes('null') };
}

function field(name, rawSchema, root, required, id) {
  const schema = resolve(rawSchema, root);
  const { type } = typeOf(schema);
  const label = h('label', { for: id }, name, required ? h('span', { class: 'required', 'aria-hidden': 'true' }, ' *') : null);
  const help = schema.description ? h('p', { class: 'help', id: `${id}-help` }, schema.description) : null;
  const common = { id, name, 'aria-describedby': help ? `${id}-help` : null, 'aria-required': required ? 'true' : null };
  const hasDefault = Object.hasOwn(schema, 'default') && schema.default !== null;
  let input;
  let read;
  if (schema.enum) {
    input = h(
      'select',
      common,
      required ? null : h('option', { value: '' }, '(default)'),
      schema.enum.map((v) => h('option', { value: String(v), selected: hasDefault && schema.default === v }, String(v))),
    );
    read = () => (input.value === '' ? undefined : input.value);
  } else if (type === 'boolean') {
    input = h('input', { ...common, type: 'checkbox', checked: hasDefault && schema.default === true });
    const initial = hasDefault ? schema.default === true : false;
    read = () => (input.checked === initial && !required ? undefined : input.checked);
  } else if (type === 'integer' || type === 'number') {
    input = h('input', {
      ...common,
      type: 'number',
      inputmode: type === 'integer' ? 'numeric' : 'decimal',
      step: type === 'integer' ? '1' : 'any',
      min: schema.minimum,
      max: schema.maximum,
      placeholder: hasDefault ? String(schema.default) : '',
    });
    read = () => {
      if (input.value.trim() === '') return undefined;
      const n = Number(input.value);
      if (!Number.isFinite(n) || (type === 'integer' && !Number.isInteger(n))) {
        throw new Error(`${name} must be ${type === 'integer' ? 'a whole number' : 'a number'}`);
      }
      return n;
    };
  } else if (type === 'array' && resolve(schema.items, root).enum) {
    const options = resolve(schema.items, root).enum;
    const boxes = options.map((v, i) => {
      const boxId = `${id}-${i}`;
      return h('span', { class: 'choice' }, h('input', { type: 'checkbox', id: boxId, value: String(v) }), h('label', { for: boxId }, String(v)));
    });
    input = h('fieldset', { id, class: 'choices', 'aria-describedby': common['aria-describedby'] }, h('legend', { class: 'visually-hidden' }, name), boxes);
    read = () => {
      const chosen = [...input.querySelectorAll('input:checked')].map((b) => b.value);
      return chosen.length ? chosen : undefined;
    };
  } else if (type === 'string') {
    const long = name === 'sql' || name.endsWith('_sql');
    input = long
      ? h('textarea', { ...common, rows: 4, spellcheck: 'false', class: 'mono' })
      : h('input', { ...common, type: 'text', spellcheck: 'false', minlength: schema.minLength, maxlength: schema.maxLength, placeholder: hasDefault ? String(schema.default) : '' });
    read = () => (input.value === '' ? undefined : input.value);
  } else {
    // Arrays and objects: JSON text.
    input = h('textarea', { ...common, rows: 2, spellcheck: 'false', class: 'mono', placeholder: hasDefault ? JSON.stringify(schema.default) : type === 'array' ? '["value", 2]' : '{}' });
    read = () => {
      if (input.value.trim() === '') return undefined;
      try {
        return JSON.parse(input.value);
      } catch {
        throw new Error(`${name} must be JSON, e.g. ${type === 'array' ? '["a", 1]' : '{"key": "value"}'}`);
      }
    };
  }
  const meta = [];
  if (schema.minimum !== undefined || schema.maximum !== undefined) meta.push(`${schema.minimum ?? '…'}–${schema.maximum ?? '…'}`);
  if (hasDefault && type !== 'boolean') meta.push(`default ${JSON.stringify(schema.default)}`);
  const row = h('div', { class: `field field-${type}` }, label, input, meta.length ? h('span', { class: 'meta' }, meta.join(', ')) : null, help);
  return { row, read, name, required, input };
}

/**
 * Builds the form of a tool. `onSubmit(arguments)` runs with the collected arguments.
 * @returns {HTMLFormElement}
 */
export function toolForm(tool, onSubmit) {
  formCounter += 1;
  const schema = tool.inputSchema || { type: 'object', properties: {} };
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) =>
    field(name, prop, schema, required.has(name), `tool-${formCounter}-${name}`),
  );
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h(
    'form',
    { class: 'tool-form', 'aria-label': `Arguments of ${tool.name}`, novalidate: true },
    fields.length ? fields.map((f) => f.row) : h('p', { class: 'muted' }, 'This tool takes no arguments.'),
    error,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, `Run ${tool.name}`)),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    error.textContent = '';
    const args = {};
    try {
      for (const f of fields) {
        const value = f.read();
        if (value === undefined) {
          if (f.required) throw new Error(`${f.name} is required`);
          continue;
        }
        args[f.name] = value;
      }
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    onSubmit(args);
  });
  return form;
}
