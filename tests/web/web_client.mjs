// pgmcp's web client in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), against a real
// pgmcp and PostgreSQL started by tests/web_client.rs. One scenario per run, chosen by the first argument:
//
//   open   the demo database without authentication: connect, tools, schema, queries, errors, export, chart,
//          plan, keyboard use, light/dark/phone screenshots
//   auth   pgmcp with Entra authentication: the explanation without a token, a rejected token, then a valid one
//   chat   the Chat tab against a scripted model (PGMCP_WEB_CHAT_EXPECT: text the answer must hold,
//          PGMCP_WEB_CHAT_CUISINE: a value the result grid must show): steps, rows, chart, stop, export
//   masked the demo served with examples/governed.toml (PGMCP_WEB_SECRETS: a JSON array of stored emails and
//          phone numbers that must appear nowhere): the table view, the SQL editor, read_table and a curated tool
//          show masked values, and other uses of the columns are explained as refused
//
// Environment: PGMCP_WEB_URL (the page, e.g. http://127.0.0.1:PORT/), PGMCP_WEB_ARTIFACTS (screenshot folder),
// PGMCP_WEB_TOKEN (auth: a valid token), PGMCP_WEB_WEAK_TOKEN (auth: a valid token without the role), PGMCP_WEB_ISSUER (auth: the provider that must be named),
// PGMCP_WEB_CALLER (auth: the oid the page must show), PGMCP_WEB_EXPECT_SESSION=1 (open: the server keeps legacy
// sessions, so the page must carry Mcp-Session-Id), PGMCP_WEB_PROFILES=a,b (open: the server has these two profiles,
// the first the default), PGMCP_WEB_BROWSER (default /usr/bin/chromium).
// Prints one line per passed step and exits non-zero at the first failure, with a screenshot of the page then.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const scenario = process.argv[2];
const base = process.env.PGMCP_WEB_URL;
const artifacts = process.env.PGMCP_WEB_ARTIFACTS || 'test-artifacts/web';
const executablePath = process.env.PGMCP_WEB_BROWSER || '/usr/bin/chromium';
const TIMEOUT = 20_000;
mkdirSync(artifacts, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function text(locator) {
  return (await locator.textContent({ timeout: TIMEOUT })) ?? '';
}

async function waitConnected(page) {
  // The page marks #main ready once the server panel (server_info) and the schema are in.
  await page.waitForSelector('#main[data-ready="true"]', { timeout: TIMEOUT });
  check((await page.getAttribute('#status', 'data-state')) === 'ok', 'status says connected');
}

async function runSql(page, sql, { limit = '' } = {}) {
  await page.locator('#tab-sql').click();
  await page.fill('#limit', limit);
  const editor = page.locator('#sql-input');
  await editor.fill(sql);
  await editor.focus();
  const before = await page.evaluate(() => document.querySelector('#sql-raw').textContent);
  await page.keyboard.press('Control+Enter');
  await page.waitForFunction((old) => {
    const raw = document.querySelector('#sql-raw').textContent;
    return raw !== old && !document.querySelector('#run').disabled;
  }, before, { timeout: TIMEOUT });
}

async function gridRows(page) {
  return page.$$eval('[data-testid="result-grid"] .grid-body [role="row"]', (rows) =>
    rows.map((row) => [...row.querySelectorAll('[role="gridcell"]')].map((cell) => ({
      text: cell.textContent,
      isNull: Boolean(cell.querySelector('.null')),
      isEmpty: Boolean(cell.querySelector('.empty')),
    }))),
  );
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });
}

const steps = [];
function step(name, body) {
  steps.push({ name, body });
}

// ---------------------------------------------------------------- open scenario

function openScenario() {
  step('connects to the page origin without a token and shows the server', async ({ page }) => {
    check((await page.inputValue('#server-url')) === new URL('mcp', base).href, 'the endpoint defaults to the page origin');
    await waitConnected(page);
    const status = await text(page.locator('#status'));
    check(/pgmcp/.test(status) && /read-only/.test(status), `status: ${status}`);
    check(!(await page.locator('#connection').evaluate((d) => d.open)), 'the connection form folds away once connected');
  });

  step('lists every tool with its annotations', async ({ page }) => {
    await page.locator('#tab-tools').click();
    const names = await page.$$eval('[data-testid="tool-list"] .tool-name', (els) => els.map((e) => e.textContent));
    for (const tool of ['server_info', 'list_tables', 'describe_table', 'execute_query', 'explain_query']) {
      check(names.includes(tool), `tool list lacks ${tool}: ${names}`);
    }
    await page.locator('.tool-item[data-tool="execute_query"]').click();
    const detail = page.locator('[data-testid="tool-detail"]');
    check((await text(detail)).includes('read-only'), 'execute_query shows its read-only annotation');
    check(await detail.locator('textarea[name="sql"][aria-required="true"]').count() === 1, 'sql is a required field');
    check(await detail.locator('input[name="limit"][max="10000"]').count() === 1, 'limit carries its bounds');
  });

  step('runs a tool from its generated form and shows the raw JSON-RPC', async ({ page }) => {
    await page.locator('.tool-item[data-tool="list_tables"]').click();
    const detail = page.locator('[data-testid="tool-detail"]');
    await detail.locator('input[name="schema"]').fill('public');
    await detail.locator('input[type="checkbox"][value="view"]').check();
    await detail.locator('button[type="submit"]').click();
    await detail.locator('.tool-output .ok-text').waitFor({ timeout: TIMEOUT });
    const output = await text(detail.locator('.tool-output'));
    check(output.includes('restaurant_ratings') && !output.includes('"reviews"'), `only views were listed: ${output.slice(0, 300)}`);
    await detail.locator('summary', { hasText: 'Raw JSON-RPC' }).click();
    const raw = await text(detail.locator('.raw-view pre').first());
    check(raw.includes('"method": "tools/call"') && raw.includes('"kinds"') && raw.includes('"view"'), `raw request: ${raw.slice(0, 400)}`);
    check(raw.includes('"structuredContent"'), 'raw response shown');
    await shot(page, 'tools-light');
  });

  step('shows the server, the access mode and the caller', async ({ page }) => {
    await page.locator('#tab-server').click();
    const info = await text(page.locator('[data-testid="server-info"]'));
    check(info.includes('2025-11-25'), 'protocol version');
    check(info.includes('read-only'), 'access mode');
    check(info.includes('restaurants'), 'database');
    check((await text(page.locator('[data-testid="caller"]'))).includes('anonymous'), 'caller without authentication');
    if (process.env.PGMCP_WEB_EXPECT_SESSION === '1') {
      check(info.includes('initialize handshake, session'), 'the Mcp-Session-Id the server issued is carried');
    }
  });

  if (process.env.PGMCP_WEB_PROFILES) {
    step('switches between the server\'s profiles', async ({ page }) => {
      const [first, second] = process.env.PGMCP_WEB_PROFILES.split(',');
      check(await page.locator('#profile-picker').isVisible(), 'the profile picker is shown for several profiles');
      check((await page.inputValue('#profile')) === first, 'the default profile is chosen first');
      await page.selectOption('#profile', second);
      await page.locator('#tab-schema').click();
      await page.locator('.table-item[data-table="public.books"]').waitFor({ timeout: TIMEOUT });
      check(await page.locator('.table-item[data-table="public.reviews"]').count() === 0, 'only the second profile\'s tables');
      await runSql(page, 'SELECT current_database() AS db');
      check((await gridRows(page))[0][0].text === 'app', 'the query ran on the second profile');
      await page.selectOption('#profile', first);
      await page.locator('#tab-schema').click();
      await page.locator('.table-item[data-table="public.reviews"]').waitFor({ timeout: TIMEOUT });
      await runSql(page, 'SELECT current_database() AS db');
      check((await gridRows(page))[0][0].text === 'restaurants', 'back on the first profile');
    });
  }

  step('reads answers framed as server-sent events', async ({ page }) => {
    const messages = await page.evaluate(async () => {
      const { parseSse } = await import(new URL('ui/mcp.js', window.location.href).href);
      return parseSse('event: message\r\nid: 7\r\ndata: {"jsonrpc":"2.0",\r\ndata: "id":3,"result":{}}\r\n\r\n: keep-alive\n\ndata: {"jsonrpc":"2.0","method":"notifications/message"}\n\n');
    });
    check(messages.length === 2 && messages[0].id === 3 && messages[1].method === 'notifications/message', JSON.stringify(messages));
  });

  step('browses the schema: search, columns, keys and indexes', async ({ page }) => {
    await page.locator('#tab-schema').click();
    await page.locator('.table-item[data-table="public.reviews"]').waitFor({ timeout: TIMEOUT });
    // Six demo relations in public, and whatever the server's extensions bring (hypopg's views in their schema).
    const relations = await page.locator('.table-item').count();
    check(relations >= 6, `${relations} relations listed`);
    await page.fill('#schema-search', 'review');
    const shown = await page.$$eval('.table-item', (items) => items.map((i) => i.dataset.table));
    check(shown.includes('public.reviews') && !shown.includes('public.cuisines') && !shown.includes('public.menu_items'), `filtered: ${shown}`);
    await page.fill('#schema-search', 'helpful');
    await page.locator('.table-item[data-table="public.reviews"] .hit').waitFor({ timeout: TIMEOUT });
    check((await text(page.locator('.table-item[data-table="public.reviews"] .hit'))).includes('helpful_votes'), 'found by column name');
    await page.locator('.table-item[data-table="public.reviews"]').click();
    const detail = page.locator('[data-testid="table-detail"]');
    await detail.waitFor({ timeout: TIMEOUT });
    const body = await text(detail);
    for (const expected of ['rating', 'smallint', 'PK', 'FK → public.restaurants(id)', 'reviews_created_at_idx', 'CHECK (rating >= 1 AND rating <= 5)']) {
      check(body.includes(expected), `table detail lacks ${expected}`);
    }
    await page.fill('#schema-search', '');
    await page.waitForFunction(() => document.querySelectorAll('.table-item .hit').length === 0, null, { timeout: TIMEOUT });
    check(await page.locator('.table-item').count() === relations, 'clearing the filter shows every relation again');
    await page.locator('.table-item[data-table="public.restaurants"]').click();
    await page.locator('[data-testid="table-detail"] h2', { hasText: 'restaurants' }).waitFor({ timeout: TIMEOUT });
    await shot(page, 'schema-light');
  });

  step('runs a query with Ctrl+Enter and shows the right rows', async ({ page }) => {
    await runSql(page, 'SELECT count(*) AS restaurants, count(DISTINCT cuisine_id) AS cuisines FROM restaurants');
    check((await text(page.locator('[data-testid="result-summary"]'))).startsWith('1 row'), 'one row');
    const rows = await gridRows(page);
    check(rows.length === 1 && rows[0][0].text === '5000' && rows[0][1].text === '16', `rows: ${JSON.stringify(rows)}`);
  });

  step('opens a table from the schema browser in the editor', async ({ page }) => {
    await page.locator('#tab-schema').click();
    await page.locator('[data-testid="table-detail"] button', { hasText: 'Query in SQL editor' }).click();
    await page.waitForFunction(() => document.querySelector('#sql-input').value.includes('FROM public.restaurants'), null, { timeout: TIMEOUT });
    await page.waitForFunction(() => /100 rows/.test(document.querySelector('[data-testid="result-summary"]').textContent), null, { timeout: TIMEOUT });
  });

  step('keeps thousands of rows fast: few DOM rows, scrolling, sorting, NULL vs empty', async ({ page }) => {
    await runSql(page, "SELECT g AS n, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'row ' || g END AS label, g * 1.5 AS score FROM generate_series(1, 5000) AS g", { limit: '10000' });
    check((await text(page.locator('[data-testid="result-summary"]'))).startsWith('5,000 rows'), 'all 5000 rows arrived');
    check(await page.locator('[data-testid="truncated"]').isHidden(), 'not truncated');
    const rendered = await gridRows(page);
    check(rendered.length > 5 && rendered.length < 120, `virtual scrolling renders a window, not ${rendered.length} rows`);
    const first = rendered[0];
    check(first[0].text === '1' && first[1].isEmpty && !first[1].isNull, 'row 1: empty string shown as empty');
    check(rendered[2][1].isNull && rendered[2][1].text === 'NULL', 'row 3: NULL shown as NULL');
    await page.locator('[data-testid="result-grid"]').focus();
    await page.keyboard.press('End');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="result-grid"] .grid-body [role="gridcell"]')].some((c) => c.textContent === '5000'), null, { timeout: TIMEOUT });
    await page.locator('[data-testid="result-grid"] [role="columnheader"] button', { hasText: 'n' }).first().click();
    await page.locator('[data-testid="result-grid"] [role="columnheader"] button', { hasText: 'n' }).first().click();
    const sorted = await page.getAttribute('[data-testid="result-grid"] [role="columnheader"]:first-child', 'aria-sort');
    check(sorted === 'descending', `aria-sort ${sorted}`);
    const top = await gridRows(page);
    check(top[0][0].text === '5000' && top[1][0].text === '4999', `sorted descending: ${top[0][0].text}, ${top[1][0].text}`);
  });

  step('measures: 10,000 rows render and scroll without delay', async ({ page }) => {
    await runSql(page, "SELECT g AS id, md5(g::text) AS hash, now() - g * interval '1 minute' AS at, g % 7 = 0 AS flag FROM generate_series(1, 10000) AS g", { limit: '10000' });
    check((await text(page.locator('[data-testid="result-summary"]'))).startsWith('10,000 rows'), 'all rows arrived');
    const timing = await page.evaluate(async () => {
      const grid = document.querySelector('[data-testid="result-grid"]');
      const frames = [];
      for (let i = 1; i <= 40; i += 1) {
        const started = performance.now();
        grid.scrollTop = (grid.scrollHeight * i) / 40;
        grid.dispatchEvent(new Event('scroll'));
        await new Promise((resolve) => requestAnimationFrame(() => resolve()));
        frames.push(performance.now() - started);
      }
      frames.sort((a, b) => a - b);
      return { median: frames[20], worst: frames[39], rows: grid.querySelectorAll('.grid-body [role="row"]').length };
    });
    const summary = await text(page.locator('[data-testid="result-summary"]'));
    console.log(`measured - 10,000-row result (${summary.split('· ').pop()} from Ctrl+Enter to the answer): ${timing.rows} rows in the DOM, scroll frame median ${timing.median.toFixed(1)} ms, worst ${timing.worst.toFixed(1)} ms`);
    check(timing.rows < 150, `rows in the DOM: ${timing.rows}`);
    // The median, not the worst frame: on a shared machine one frame can wait for the CPU whatever the page does.
    check(timing.median < 100, `a typical scroll frame took ${timing.median} ms`);
  });

  step('flags truncation', async ({ page }) => {
    await runSql(page, 'SELECT g FROM generate_series(1, 5000) AS g', { limit: '25' });
    const flag = page.locator('[data-testid="truncated"]');
    check(await flag.isVisible(), 'truncation banner shown');
    check((await text(flag)).includes('first 25'), await text(flag));
  });

  step('explains a guard rejection', async ({ page }) => {
    await runSql(page, 'DELETE FROM reviews');
    const problem = page.locator('[data-testid="sql-error"]');
    const body = await text(problem);
    check(body.includes('read-only guard') && body.includes('DELETE is not allowed'), body);
    check(await page.locator('#result').isHidden(), 'no stale result under the error');
    await shot(page, 'guard-light');
  });

  step('explains a PostgreSQL error with its SQLSTATE and marks the position', async ({ page }) => {
    await runSql(page, 'SELECT id,\n       nmae\nFROM restaurants');
    check((await text(page.locator('[data-testid="sqlstate"]'))) === '42703', 'SQLSTATE 42703');
    const problem = await text(page.locator('[data-testid="sql-error"]'));
    check(problem.includes('column "nmae" does not exist'), problem);
    check((await text(page.locator('[data-testid="error-position"]'))).includes('line 2, column 8'), 'line and column');
    check((await text(page.locator('.sql-highlight [data-error="true"]'))) === 'nmae', 'the token at the position is marked');
    await page.locator('[data-testid="error-position"] button').click();
    const caret = await page.evaluate(() => document.activeElement.id + ':' + document.activeElement.selectionStart);
    check(caret === 'sql-input:18', `caret at the error: ${caret}`);
    await shot(page, 'sql-error-light');
  });

  step('downloads the result as CSV with NULL, empty strings and quoting intact', async ({ page }) => {
    await runSql(page, "SELECT 1 AS id, 'a,b' AS txt, NULL::text AS nothing, '' AS empty, 'say \"hi\"' AS quoted, '{\"k\": [1, 2]}'::jsonb AS doc\nUNION ALL SELECT 2, 'plain', 'x', 'y', 'z', '[]'::jsonb\nORDER BY id");
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: TIMEOUT }), page.locator('[data-testid="download-csv"]').click()]);
    check(download.suggestedFilename().endsWith('.csv'), download.suggestedFilename());
    const csv = readFileSync(await download.path(), 'utf8');
    const expected = 'id,txt,nothing,empty,quoted,doc\r\n1,"a,b",,"","say ""hi""","{""k"":[1,2]}"\r\n2,plain,x,y,z,[]\r\n';
    check(csv === expected, `CSV was ${JSON.stringify(csv)}`);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
    await page.locator('#copy-tsv').click();
    await page.locator('#copy-tsv', { hasText: 'Copied' }).waitFor({ timeout: TIMEOUT });
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    check(copied.split('\n')[1] === '1\ta,b\t\t\tsay "hi"\t{"k":[1,2]}', `copied ${JSON.stringify(copied)}`);
    const [json] = await Promise.all([page.waitForEvent('download', { timeout: TIMEOUT }), page.locator('#download-json').click()]);
    const records = JSON.parse(readFileSync(await json.path(), 'utf8'));
    check(records.length === 2 && records[0].nothing === null && records[0].empty === '' && records[0].doc.k[1] === 2, JSON.stringify(records));
  });

  step('charts a result with a numeric column', async ({ page }) => {
    await runSql(page, 'SELECT c.name AS cuisine, count(*) AS restaurants, round(avg(r.price_range), 2) AS avg_price\nFROM restaurants r JOIN cuisines c ON c.id = r.cuisine_id\nGROUP BY c.name\nORDER BY restaurants DESC');
    check(!(await page.locator('#view-chart').isDisabled()), 'chart available');
    await page.locator('#view-chart').click();
    const canvas = page.locator('[data-testid="chart"]');
    await canvas.waitFor({ state: 'visible', timeout: TIMEOUT });
    const painted = await canvas.evaluate((c) => {
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let inked = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked += 1;
      return inked;
    });
    check(painted > 2000, `the chart drew ${painted} pixels`);
    check((await canvas.getAttribute('aria-label')).includes('16 bars'), await canvas.getAttribute('aria-label'));
    await page.selectOption('#chart-kind', 'line');
    await shot(page, 'chart-light');
    await page.selectOption('#chart-kind', 'bar');
    await shot(page, 'chart-bar-light');
    await page.locator('#view-table').click();
  });

  step('shows a plan as a tree with costs', async ({ page }) => {
    await page.locator('#sql-input').fill('SELECT r.name, count(*) FROM restaurants r JOIN reviews v ON v.restaurant_id = r.id GROUP BY r.name ORDER BY 2 DESC LIMIT 5');
    await page.locator('#explain').click();
    const plan = page.locator('[data-testid="plan"]');
    await plan.waitFor({ timeout: TIMEOUT });
    const body = await text(plan);
    check(body.includes('Limit') && body.includes('Seq Scan on reviews') && /cost \d+\.\d\d\.\.\d+\.\d\d/.test(body), body.slice(0, 400));
    check(await plan.locator('[role="treeitem"]').count() >= 4, 'nested plan nodes');
    await shot(page, 'plan-light');
    await page.locator('#analyze').check();
    await page.locator('#explain').click();
    await page.locator('[data-testid="plan"] .actual').first().waitFor({ timeout: TIMEOUT });
    const analyzed = await text(page.locator('[data-testid="plan"]'));
    check(analyzed.includes('Executed (ANALYZE)') && /actual \d+\.\d\d\.\.\d+\.\d\d ms, rows \d+/.test(analyzed), analyzed.slice(0, 400));
    await page.locator('#analyze').uncheck();
  });

  step('keeps history locally', async ({ page }) => {
    const options = await page.$$eval('#history option', (os) => os.map((o) => o.textContent));
    check(options.some((o) => o.includes('DELETE FROM reviews')), 'history holds earlier statements');
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('pgmcp.history')).length);
    check(stored >= 5, `history entries: ${stored}`);
  });

  step('is usable with the keyboard alone', async ({ page }) => {
    await page.locator('#tab-sql').focus();
    await page.keyboard.press('ArrowRight');
    check((await page.getAttribute('#tab-schema', 'aria-selected')) === 'true', 'arrow keys move between tabs');
    check(await page.evaluate(() => document.activeElement.id) === 'tab-schema', 'focus follows');
    await page.keyboard.press('Home');
    check((await page.getAttribute('#tab-sql', 'aria-selected')) === 'true', 'Home goes to the first tab');
    // Tab order from the tab list reaches the editor (through the profile picker when there is one), and the
    // editor does not trap Tab.
    await page.keyboard.press('Tab');
    if (process.env.PGMCP_WEB_PROFILES) {
      check(await page.evaluate(() => document.activeElement.id) === 'profile', 'Tab reaches the profile picker');
      await page.keyboard.press('Tab');
    }
    check(await page.evaluate(() => document.activeElement.id) === 'sql-input', 'Tab reaches the editor');
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement.id) === 'run', 'Tab leaves the editor to Run');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check(outline !== 'none', 'focus is visible');
  });

  step('switches to dark and renders the main screens', async ({ page }) => {
    await runSql(page, 'SELECT c.name AS cuisine, count(DISTINCT r.id) AS restaurants,\n       round(avg(v.rating), 2) AS avg_rating, count(v.id) AS reviews\nFROM cuisines c\nJOIN restaurants r ON r.cuisine_id = c.id\nJOIN reviews v ON v.restaurant_id = r.id\nGROUP BY c.name\nORDER BY avg_rating DESC');
    check((await text(page.locator('[data-testid="result-summary"]'))).startsWith('16 rows'), 'one row per cuisine');
    await page.evaluate(() => document.activeElement.blur());
    await shot(page, 'overview-light');
    await runSql(page, 'SELECT r.name, r.city, c.name AS cuisine, r.price_range, r.opened_on\nFROM restaurants r JOIN cuisines c ON c.id = r.cuisine_id\nORDER BY r.id\nLIMIT 200');
    await shot(page, 'sql-light');
    await page.locator('#theme').click(); // auto → light
    await page.locator('#theme').click(); // light → dark
    check((await page.getAttribute('html', 'data-theme')) === 'dark', 'dark theme set');
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(background === 'rgb(15, 19, 24)', `dark background: ${background}`);
    await shot(page, 'sql-dark');
    await page.locator('#tab-schema').click();
    await shot(page, 'schema-dark');
    await page.locator('#tab-sql').click();
    await page.locator('#theme').click(); // dark → auto
  });
}

async function phoneScreens(browser) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await page.goto(base);
  await waitConnected(page);
  await runSql(page, 'SELECT name, city, price_range FROM restaurants ORDER BY id LIMIT 50');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 1, `the page scrolls sideways on a phone by ${overflow}px`);
  await shot(page, 'sql-phone');
  await page.locator('#tab-schema').click();
  await page.locator('.table-item[data-table="public.reviews"]').click();
  await page.locator('[data-testid="table-detail"]').waitFor({ timeout: TIMEOUT });
  await shot(page, 'schema-phone');
  await context.close();
  console.log('ok - fits a phone screen');
}

async function darkByPreference(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'dark' });
  const page = await context.newPage();
  await page.goto(base);
  await waitConnected(page);
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(background === 'rgb(15, 19, 24)', `prefers-color-scheme: dark gives the dark theme, got ${background}`);
  await page.locator('#tab-server').click();
  await shot(page, 'server-dark');
  await context.close();
  console.log('ok - follows prefers-color-scheme: dark');
}

// ---------------------------------------------------------------- auth scenario

function authScenario() {
  const token = process.env.PGMCP_WEB_TOKEN;
  const issuer = process.env.PGMCP_WEB_ISSUER;
  step('explains the 401 without a token: identity provider and scope from the metadata', async ({ page }) => {
    const explanation = page.locator('[data-testid="auth-explanation"]');
    await explanation.waitFor({ timeout: TIMEOUT });
    const body = await text(explanation);
    check(body.includes('This server needs an access token'), body);
    check(body.includes('401'), 'status shown');
    check(body.includes(issuer), `names the identity provider ${issuer}: ${body}`);
    check(body.includes('user_impersonation'), 'names the scope to request');
    check(await page.locator('#main').isHidden(), 'nothing else is shown');
    await shot(page, 'auth-required-light');
  });

  step('explains a rejected token', async ({ page }) => {
    check(await page.locator('#connection').evaluate((d) => d.open), 'the connection form is open while not connected');
    await page.fill('#token', 'not-a-real-token');
    await page.locator('#connect-button').click();
    await page.locator('[data-testid="auth-explanation"] h2', { hasText: 'rejected your token' }).waitFor({ timeout: TIMEOUT });
    check((await text(page.locator('[data-testid="auth-explanation"]'))).includes('invalid_token'), 'error code shown');
  });

  step('explains a valid token that lacks the role (403)', async ({ page }) => {
    await page.fill('#token', process.env.PGMCP_WEB_WEAK_TOKEN);
    await page.locator('#connect-button').click();
    const explanation = page.locator('[data-testid="auth-explanation"]');
    await explanation.locator('h2', { hasText: 'does not grant access' }).waitFor({ timeout: TIMEOUT });
    const body = await text(explanation);
    check(body.includes('insufficient_scope') && body.includes('403'), body);
  });

  step('connects with a valid token, kept in session storage only', async ({ page }) => {
    await page.fill('#token', token);
    await page.locator('#connect-button').click();
    await waitConnected(page);
    check(await page.evaluate(() => sessionStorage.getItem('pgmcp.token')) === token, 'token in sessionStorage');
    check(await page.evaluate(() => JSON.stringify(localStorage).includes('eyJ')) === false, 'token never in localStorage');
    await page.locator('#tab-server').click();
    const caller = await text(page.locator('[data-testid="caller"]'));
    check(caller.includes(process.env.PGMCP_WEB_CALLER), `caller identity shown: ${caller}`);
    check((await text(page.locator('[data-testid="server-info"]'))).includes('MCP.Access'), 'roles shown');
    await shot(page, 'auth-connected-light');
  });

  step('runs a query with the token', async ({ page }) => {
    await runSql(page, "SELECT 'authenticated' AS who");
    const rows = await gridRows(page);
    check(rows[0]?.[0]?.text === 'authenticated', JSON.stringify(rows));
  });

  step('a reload in the same tab stays connected', async ({ page }) => {
    await page.reload();
    await waitConnected(page);
  });
}

// ---------------------------------------------------------------- chat scenario
// The server's model is tests/chat_web.rs's scripted stand-in: the first question is answered through
// list_tables → describe_table → execute_query, the second stalls mid-answer until the page stops it.

function chatScenario() {
  step('asks in the Chat tab and shows each step, the rows and the answer', async ({ page }) => {
    await waitConnected(page);
    await page.locator('#tab-chat').click();
    await page.fill('#chat-input', 'which cuisine has the best average rating?');
    await page.locator('[data-testid="chat-send"]').click();
    const answer = page.locator('[data-testid="chat-answer"]').first();
    await page.waitForFunction(() => document.querySelector('[data-testid="chat-turn"]')?.getAttribute('aria-busy') === 'false', null, { timeout: TIMEOUT });
    const said = await text(answer);
    check(said.includes(process.env.PGMCP_WEB_CHAT_EXPECT), `answer: ${said}`);
    const steps = await page.locator('[data-testid="chat-step"] summary code').allTextContents();
    check(JSON.stringify(steps) === JSON.stringify(['list_tables', 'describe_table', 'execute_query']), `steps: ${steps}`);
    check(await page.locator('[data-testid="chat-grid"]').first().isHidden(), 'steps start closed');
    await page.locator('[data-testid="chat-step"] summary', { hasText: 'execute_query' }).click();
    const cells = await page.locator('[data-testid="chat-grid"] [role="gridcell"]').allTextContents();
    check(cells.includes(process.env.PGMCP_WEB_CHAT_CUISINE), `grid cells: ${cells.slice(0, 6)}`);
    await page.locator('.chat-result button', { hasText: 'Chart' }).click();
    check(await page.locator('[data-testid="chat-chart"]').isVisible(), 'the chart view shows');
    await page.locator('.chat-result button', { hasText: 'Table' }).click();
    await shot(page, 'chat');
  });

  step('Stop ends an answer that is still streaming', async ({ page }) => {
    await page.fill('#chat-input', 'and which city?');
    await page.keyboard.press('Enter');
    const second = page.locator('[data-testid="chat-turn"]').nth(1);
    await page.waitForFunction(() => (document.querySelectorAll('[data-testid="chat-answer"]')[1]?.textContent || '').includes('Thinking'), null, { timeout: TIMEOUT });
    check(await page.locator('[data-testid="chat-stop"]').isEnabled(), 'Stop is enabled while answering');
    await page.locator('[data-testid="chat-stop"]').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="chat-turn"]')[1]?.getAttribute('aria-busy') === 'false', null, { timeout: TIMEOUT });
    check((await text(second)).includes('Stopped.'), 'the turn says it stopped');
    check(await page.locator('[data-testid="chat-send"]').isEnabled(), 'Ask is enabled again');
    check(await page.locator('[data-testid="chat-stop"]').isDisabled(), 'Stop is disabled again');
  });

  step('exports the conversation as Markdown and JSON', async ({ page }) => {
    const [markdown] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="chat-export-md"]').click()]);
    const md = readFileSync(await markdown.path(), 'utf8');
    check(md.includes('## which cuisine has the best average rating?') && md.includes('```sql') && md.includes('_Stopped._'), md);
    check(md.includes(process.env.PGMCP_WEB_CHAT_EXPECT), 'the Markdown holds the answer');
    const [json] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="chat-export-json"]').click()]);
    const turns = JSON.parse(readFileSync(await json.path(), 'utf8'));
    check(turns.length === 2 && turns[0].sql.length === 1 && turns[1].stopped === true, JSON.stringify(turns).slice(0, 300));
    check(turns[0].events.filter((e) => e.type === 'tool_call').length === 3, 'three tool calls recorded');
  });
}

// ---------------------------------------------------------------- masked scenario

function maskedScenario() {
  const secrets = JSON.parse(process.env.PGMCP_WEB_SECRETS || '[]');
  const EMAIL = /^[a-z]\*\*\*@e\*\*\*\.com$/;
  const PHONE = /^h:[0-9a-f]{16}$/;
  // Nothing the page shows or holds — visible text, the raw JSON-RPC views, form values — may contain a stored value.
  async function checkNoSecret(page, where) {
    const everything = await page.evaluate(() => document.body.innerText + '\n' + [...document.querySelectorAll('pre, textarea, .raw-view')].map((e) => e.textContent).join('\n'));
    const found = secrets.find((secret) => everything.includes(secret));
    check(!found, `${where}: the page shows the stored value ${found}`);
  }
  async function columnCells(page, name) {
    return page.evaluate((wanted) => {
      const grid = document.querySelector('[data-testid="result-grid"]');
      const heads = [...grid.querySelectorAll('[role="columnheader"]')].map((head) => head.textContent.trim());
      const index = heads.findIndex((head) => head === wanted || head.startsWith(wanted));
      if (index < 0) return { heads, cells: null };
      const cells = [...grid.querySelectorAll('.grid-body [role="row"]')].map((row) => {
        const cell = row.querySelectorAll('[role="gridcell"]')[index];
        return cell.querySelector('.null') ? null : cell.textContent;
      });
      return { heads, cells };
    }, name);
  }
  async function checkMaskedGrid(page, where) {
    const emails = await columnCells(page, 'email');
    check(emails.cells && emails.cells.length > 0, `${where}: no email column in ${emails.heads}`);
    check(emails.cells.every((cell) => EMAIL.test(cell)), `${where}: emails ${emails.cells.slice(0, 5)}`);
    const phones = await columnCells(page, 'phone');
    check(phones.cells && phones.cells.some((cell) => cell !== null), `${where}: no phone shown in ${phones.heads}`);
    check(phones.cells.every((cell) => cell === null || PHONE.test(cell)), `${where}: phones ${phones.cells.slice(0, 5)}`);
    const names = await columnCells(page, 'first_name');
    check(names.cells && names.cells.every((cell) => /^[A-Z][a-z]+$/.test(cell)), `${where}: unmasked names ${names.cells?.slice(0, 5)}`);
    await checkNoSecret(page, where);
  }

  step('connects to a server whose profile masks customers\' contacts', async ({ page }) => {
    check(secrets.length >= 100, `PGMCP_WEB_SECRETS holds ${secrets.length} values`);
    await waitConnected(page);
  });

  step('the table view queries customers and shows emails and phones masked', async ({ page }) => {
    await page.locator('#tab-schema').click();
    await page.locator('.table-item[data-table="public.customers"]').click();
    const detail = page.locator('[data-testid="table-detail"]');
    await detail.locator('h2', { hasText: 'customers' }).waitFor({ timeout: TIMEOUT });
    await detail.locator('button', { hasText: 'Query in SQL editor' }).click();
    await page.waitForFunction(() => /100 rows/.test(document.querySelector('[data-testid="result-summary"]').textContent), null, { timeout: TIMEOUT });
    await checkMaskedGrid(page, 'SELECT * FROM public.customers');
    await shot(page, 'masked-light');
  });

  step('a query of its own, joined to orders, is masked too', async ({ page }) => {
    await runSql(page, 'SELECT c.id, c.first_name, c.email, c.phone, count(o.id) AS orders\nFROM customers c LEFT JOIN orders o ON o.customer_id = c.id\nGROUP BY c.id\nORDER BY c.id\nLIMIT 50');
    check((await text(page.locator('[data-testid="result-summary"]'))).startsWith('50 rows'), 'fifty customers');
    await checkMaskedGrid(page, 'the joined query');
  });

  step('any other use of a masked column is explained as refused', async ({ page }) => {
    await runSql(page, 'SELECT lower(email) FROM customers ORDER BY id LIMIT 5');
    const problem = await text(page.locator('[data-testid="sql-error"]'));
    check(problem.includes('column public.customers.email is masked'), problem);
    await runSql(page, "SELECT histogram_bounds FROM pg_stats WHERE tablename = 'customers'");
    const stats = await text(page.locator('[data-testid="sql-error"]'));
    check(stats.includes('is masked'), stats);
    await checkNoSecret(page, 'the refusals');
  });

  step('read_table and the curated customer_card show masked values', async ({ page }) => {
    await page.locator('#tab-tools').click();
    const names = await page.$$eval('[data-testid="tool-list"] .tool-name', (els) => els.map((e) => e.textContent));
    check(names.includes('orders_for_customer') && names.includes('customer_card'), `curated tools listed: ${names}`);
    const detail = page.locator('[data-testid="tool-detail"]');
    await page.locator('.tool-item[data-tool="read_table"]').click();
    await detail.locator('input[name="table"]').fill('customers');
    await detail.locator('button[type="submit"]').click();
    await detail.locator('.tool-output .ok-text').waitFor({ timeout: TIMEOUT });
    const table = await text(detail.locator('.tool-output'));
    check(/[a-z]\*\*\*@e\*\*\*\.com/.test(table) && /h:[0-9a-f]{16}/.test(table), `read_table output: ${table.slice(0, 400)}`);
    await checkNoSecret(page, 'read_table');
    await page.locator('.tool-item[data-tool="customer_card"]').click();
    await detail.locator('input[name="customer_id"]').fill('1');
    await detail.locator('button[type="submit"]').click();
    await detail.locator('.tool-output .ok-text').waitFor({ timeout: TIMEOUT });
    const card = await text(detail.locator('.tool-output'));
    check(card.includes('Mia') && /[a-z]\*\*\*@e\*\*\*\.com/.test(card), `customer_card output: ${card.slice(0, 400)}`);
    await checkNoSecret(page, 'customer_card');
    await shot(page, 'masked-tool-light');
  });
}

// ---------------------------------------------------------------- runner

async function main() {
  check(base, 'PGMCP_WEB_URL is not set');
  if (scenario === 'open') openScenario();
  else if (scenario === 'auth') authScenario();
  else if (scenario === 'chat') chatScenario();
  else if (scenario === 'masked') maskedScenario();
  else throw new Error(`unknown scenario ${scenario}: use open, auth, chat or masked`);
  const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light', acceptDownloads: true });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/status of 40[13]/.test(message.text())) problems.push(`console error: ${message.text()}`);
  });
  let failed = false;
  try {
    await page.goto(base);
    for (const { name, body } of steps) {
      try {
        await body({ page, browser });
        check(problems.length === 0, problems.join('\n'));
        console.log(`ok - ${name}`);
      } catch (err) {
        failed = true;
        console.log(`not ok - ${name}: ${err.message}`);
        await shot(page, `FAILED-${scenario}`).catch(() => {});
        break;
      }
    }
    if (!failed && scenario === 'open') {
      await phoneScreens(browser);
      await darkByPreference(browser);
    }
  } catch (err) {
    failed = true;
    console.log(`not ok - ${scenario}: ${err.message}`);
  } finally {
    await browser.close();
  }
  if (failed) process.exit(1);
  console.log(`passed: ${scenario}`);
}

main().catch((err) => {
  console.log(`not ok - ${err.stack || err}`);
  process.exit(1);
});
