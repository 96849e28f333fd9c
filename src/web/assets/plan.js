// explain_query's JSON plan as a tree: one node per plan step with its estimated cost and rows (and the actual
// time and rows after ANALYZE), the conditions that explain it, and a bar for its share of the total cost.

import { h } from './dom.js';

const DETAIL_KEYS = [
  'Index Name', 'Index Cond', 'Recheck Cond', 'Filter', 'Rows Removed by Filter', 'Hash Cond', 'Merge Cond',
  'Join Filter', 'Sort Key', 'Sort Method', 'Group Key', 'Presorted Key', 'Strategy', 'Join Type', 'Output',
  'Workers Planned', 'Workers Launched', 'Heap Fetches', 'Shared Hit Blocks', 'Shared Read Blocks', 'One-Time Filter',
  'Subplan Name', 'CTE Name', 'Function Name',
];

function title(node) {
  let text = node['Node Type'] || 'Step';
  if (node.Strategy && node['Node Type'] === 'Aggregate') text = `${node.Strategy} ${text}`;
  if (node['Join Type'] && /Join|Nested Loop/.test(text)) text = `${node['Join Type']} ${text}`;
  if (node['Relation Name']) {
    text += ` on ${node.Schema ? `${node.Schema}.` : ''}${node['Relation Name']}`;
    if (node.Alias && node.Alias !== node['Relation Name']) text += ` ${node.Alias}`;
  } else if (node['CTE Name']) text += ` on ${node['CTE Name']}`;
  if (node['Index Name'] && !node['Relation Name']) text += ` using ${node['Index Name']}`;
  return text;
}

const fixed = (n) => (typeof n === 'number' ? n.toFixed(2) : n);

function planNode(node, rootCost, depth) {
  const children = node.Plans || [];
  const share = rootCost > 0 ? Math.min(1, (node['Total Cost'] || 0) / rootCost) : 0;
  const figures = [
    h('span', { class: 'cost' }, `cost ${fixed(node['Startup Cost'])}..${fixed(node['Total Cost'])}`),
    h('span', {}, `rows ${node['Plan Rows']}`),
    node['Plan Width'] !== undefined ? h('span', {}, `width ${node['Plan Width']}`) : null,
  ];
  if (node['Actual Total Time'] !== undefined) {
    const loops = node['Actual Loops'] ?? 1;
    figures.push(h('span', { class: 'actual' }, `actual ${fixed(node['Actual Startup Time'])}..${fixed(node['Actual Total Time'])} ms, rows ${node['Actual Rows']}${loops > 1 ? ` × ${loops} loops` : ''}`));
  }
  const details = DETAIL_KEYS.filter((key) => node[key] !== undefined && key !== 'Strategy' && key !== 'Join Type').map((key) =>
    h('li', {}, h('span', { class: 'detail-key' }, `${key}: `), Array.isArray(node[key]) ? node[key].join(', ') : String(node[key])),
  );
  const bar = h('span', { class: 'cost-bar', 'aria-hidden': 'true' }, h('span', { class: 'cost-fill' }));
  bar.firstChild.style.width = `${Math.round(share * 100)}%`;
  const summary = h(
    'summary',
    {},
    h('span', { class: 'node-type' }, title(node)),
    bar,
    h('span', { class: 'figures' }, figures),
  );
  const content = [
    details.length ? h('ul', { class: 'plan-details' }, details) : null,
    children.length
      ? h('ul', { role: 'group', class: 'plan-children' }, children.map((child) => planNode(child, rootCost, depth + 1)))
      : null,
  ];
  const item = h('li', { role: 'treeitem', 'aria-level': depth, class: 'plan-node' });
  if (children.length || details.length) {
    item.append(h('details', { open: true }, summary, content));
  } else {
    item.append(h('div', { class: 'plan-leaf' }, [...summary.childNodes]));
  }
  return item;
}

/** The tree of an explain_query result ({plan, text, analyzed}). */
export function planView(result) {
  const root = result.plan?.Plan || result.plan?.[0]?.Plan || result.plan;
  const totals = [];
  if (result.plan?.['Planning Time'] !== undefined) totals.push(`planning ${fixed(result.plan['Planning Time'])} ms`);
  if (result.plan?.['Execution Time'] !== undefined) totals.push(`execution ${fixed(result.plan['Execution Time'])} ms`);
  return h(
    'div',
    { class: 'plan', 'data-testid': 'plan' },
    h('p', { class: 'muted' }, result.analyzed ? 'Executed (ANALYZE) inside a read-only transaction that was rolled back. ' : 'Estimated plan (not executed). ', totals.join(', ')),
    root && root['Node Type']
      ? h('ul', { role: 'tree', class: 'plan-tree', 'aria-label': 'Query plan' }, planNode(root, root['Total Cost'] || 0, 1))
      : null,
    result.text ? h('details', { class: 'plan-text' }, h('summary', {}, 'Plan as text'), h('pre', { class: 'raw' }, result.text)) : null,
  );
}
