// A chart of a result with a numeric column, drawn on a canvas: bar, line or scatter; X is any column, Y a
// numeric one. Colours come from the page's CSS so light and dark both read well.

import { h, clear, cellText } from './dom.js';
import { isNumericType, toNumber } from './results.js';

const MAX_BARS = 200;
const MAX_POINTS = 20000;

/** Whether a result can be charted: some column is numeric by type or by its values. */
export function numericColumns(columns, rows) {
  return columns
    .map((c, i) => ({ c, i }))
    .filter(({ c, i }) => isNumericType(c.type) || (rows.length > 0 && rows.slice(0, 50).every((r) => r[i] === null || !Number.isNaN(toNumber(r[i])))))
    .map(({ i }) => i);
}

function niceTicks(min, max, count) {
  if (min === max) {
    min -= 1;
    max += 1;
  }
  const span = max - min;
  const step0 = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= step0) || step0;
  const start = Math.floor(min / step) * step;
  const ticks = [];
  // Ticks run until one reaches the maximum, so the tallest bar or highest point stays inside the axis.
  for (let v = start; ticks.length < 50; v += step) {
    ticks.push(Number(v.toPrecision(12)));
    if (v >= max) break;
  }
  return ticks;
}

function label(value) {
  if (typeof value === 'number') {
    if (Math.abs(value) >= 1e6 || (Math.abs(value) < 1e-3 && value !== 0)) return value.toExponential(2);
    return Number(value.toPrecision(6)).toLocaleString('en-US');
  }
  const text = cellText(value);
  return text.length > 18 ? `${text.slice(0, 17)}…` : text;
}

export class ResultChart {
  constructor(host) {
    this.host = host;
    this.kind = h('select', { id: 'chart-kind', 'aria-label': 'Chart type' }, ['bar', 'line', 'scatter'].map((k) => h('option', { value: k }, k)));
    this.x = h('select', { id: 'chart-x', 'aria-label': 'X axis column' });
    this.y = h('select', { id: 'chart-y', 'aria-label': 'Y axis column' });
    this.canvas = h('canvas', { class: 'chart-canvas', role: 'img', 'data-testid': 'chart' });
    this.note = h('p', { class: 'muted chart-note', 'aria-live': 'polite' });
    const controls = h(
      'div',
      { class: 'chart-controls' },
      h('label', { for: 'chart-kind' }, 'Type'),
      this.kind,
      h('label', { for: 'chart-x' }, 'X'),
      this.x,
      h('label', { for: 'chart-y' }, 'Y'),
      this.y,
    );
    host.append(controls, this.canvas, this.note);
    for (const select of [this.kind, this.x, this.y]) select.addEventListener('change', () => this.draw());
    new ResizeObserver(() => this.draw()).observe(this.canvas);
    matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => this.draw());
  }

  /** Loads a result; returns false (and draws nothing) when no column is numeric. */
  show(columns, rows) {
    this.columns = columns;
    this.rows = rows;
    const numeric = numericColumns(columns, rows);
    if (numeric.length === 0) return false;
    const option = (i) => h('option', { value: String(i) }, columns[i].name);
    clear(this.x, columns.map((_, i) => option(i)));
    clear(this.y, numeric.map(option));
    const firstText = columns.findIndex((_, i) => !numeric.includes(i));
    const xIndex = firstText >= 0 ? firstText : numeric.length > 1 ? numeric[0] : 0;
    const yIndex = numeric.find((i) => i !== xIndex) ?? numeric[0];
    this.x.value = String(xIndex);
    this.y.value = String(yIndex);
    this.kind.value = firstText >= 0 ? 'bar' : 'scatter';
    this.draw();
    return true;
  }

  draw() {
    if (!this.rows || !this.canvas.isConnected || this.canvas.clientWidth === 0) return;
    const xi = Number(this.x.value);
    const yi = Number(this.y.value);
    const kind = this.kind.value;
    const css = getComputedStyle(this.canvas);
    const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const ink = color('--text', '#222');
    const muted = color('--muted', '#777');
    const grid = color('--border', '#ddd');
    const accent = color('--accent', '#2563eb');
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = '12px system-ui, sans-serif';

    const xNumeric = kind !== 'bar' && numericColumns(this.columns, this.rows).includes(xi);
    let points = this.rows
      .map((row, i) => ({ x: xNumeric ? toNumber(row[xi]) : row[xi], y: toNumber(row[yi]), i }))
      .filter((p) => !Number.isNaN(p.y) && (!xNumeric || !Number.isNaN(p.x)));
    const limit = kind === 'bar' ? MAX_BARS : MAX_POINTS;
    const dropped = Math.max(0, points.length - limit);
    points = points.slice(0, limit);
    if (kind === 'line' && xNumeric) points.sort((a, b) => a.x - b.x);
    this.note.textContent = points.length === 0
      ? 'Nothing to draw: the Y column has no numeric values.'
      : `${points.length.toLocaleString('en-US')} ${kind === 'bar' ? 'bars' : 'points'}${dropped ? ` (the first ${limit}; ${dropped.toLocaleString('en-US')} more not drawn)` : ''}.`;
    this.canvas.setAttribute('aria-label', `${kind} chart of ${this.columns[yi].name} by ${this.columns[xi].name}: ${this.note.textContent}`);
    if (points.length === 0) return;

    const left = 64;
    const right = 16;
    const top = 12;
    const bottom = kind === 'bar' ? 72 : 36;
    const plotW = Math.max(10, width - left - right);
    const plotH = Math.max(10, height - top - bottom);
    const ys = points.map((p) => p.y);
    let yMin = Math.min(...ys);
    let yMax = Math.max(...ys);
    if (kind === 'bar') {
      yMin = Math.min(0, yMin);
      yMax = Math.max(0, yMax);
    }
    const yTicks = niceTicks(yMin, yMax, 5);
    yMin = Math.min(yMin, yTicks[0]);
    yMax = Math.max(yMax, yTicks[yTicks.length - 1]);
    const yPos = (v) => top + plotH - ((v - yMin) / (yMax - yMin || 1)) * plotH;

    ctx.strokeStyle = grid;
    ctx.fillStyle = muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const t of yTicks) {
      const y = Math.round(yPos(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + plotW, y);
      ctx.stroke();
      ctx.fillText(label(t), left - 6, y);
    }

    ctx.fillStyle = accent;
    ctx.strokeStyle = accent;
    if (kind === 'bar') {
      const slot = plotW / points.length;
      const barW = Math.max(1, slot * 0.75);
      const zero = yPos(0);
      points.forEach((p, n) => {
        const x = left + n * slot + (slot - barW) / 2;
        const y = yPos(p.y);
        ctx.fillRect(x, Math.min(y, zero), barW, Math.abs(zero - y));
      });
      ctx.fillStyle = muted;
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      const every = Math.ceil(points.length / Math.max(1, Math.floor(plotW / 16)));
      points.forEach((p, n) => {
        if (n % every) return;
        ctx.save();
        ctx.translate(left + n * slot + slot / 2, top + plotH + 6);
        ctx.rotate(-Math.PI / 4);
        ctx.fillText(label(p.x), 0, 0);
        ctx.restore();
      });
    } else {
      let xPos;
      if (xNumeric) {
        const xs = points.map((p) => p.x);
        const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), Math.max(2, Math.floor(plotW / 90)));
        const xMin = Math.min(Math.min(...xs), xTicks[0]);
        const xMax = Math.max(Math.max(...xs), xTicks[xTicks.length - 1]);
        xPos = (p) => left + ((p.x - xMin) / (xMax - xMin || 1)) * plotW;
        ctx.fillStyle = muted;
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        for (const t of xTicks) ctx.fillText(label(t), left + ((t - xMin) / (xMax - xMin || 1)) * plotW, top + plotH + 6);
      } else {
        // Categories sit in the middle of equal slots, as bars do, so the first and last stay clear of the edges.
        xPos = (p, n) => left + ((n + 0.5) / points.length) * plotW;
        ctx.fillStyle = muted;
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        const every = Math.ceil(points.length / Math.max(1, Math.floor(plotW / 90)));
        points.forEach((p, n) => {
          if (n % every === 0) ctx.fillText(label(p.x), xPos(p, n), top + plotH + 6);
        });
      }
      ctx.fillStyle = accent;
      if (kind === 'line') {
        ctx.lineWidth = 2;
        ctx.beginPath();
        points.forEach((p, n) => (n ? ctx.lineTo(xPos(p, n), yPos(p.y)) : ctx.moveTo(xPos(p, n), yPos(p.y))));
        ctx.stroke();
      }
      const r = kind === 'scatter' ? 3 : 2;
      ctx.globalAlpha = kind === 'scatter' && points.length > 2000 ? 0.4 : 1;
      points.forEach((p, n) => {
        ctx.beginPath();
        ctx.arc(xPos(p, n), yPos(p.y), r, 0, Math.PI * 2);
        ctx.fill();
      });
      ctx.globalAlpha = 1;
    }
    ctx.strokeStyle = ink;
    ctx.beginPath();
    ctx.moveTo(left + 0.5, top);
    ctx.lineTo(left + 0.5, top + plotH + 0.5);
    ctx.lineTo(left + plotW, top + plotH + 0.5);
    ctx.stroke();
  }
}
