// The supervision view's trend: one place's rate over its last periods (months or ISO weeks,
// ending with the month chosen), as inline SVG — no chart library, no build step. A period with
// no figure (nothing to divide by) has no point, and the line breaks there.
import { esc } from './dom.js';

/** How many periods the trend shows, by period. */
export const TREND_PERIODS = { month: 6, week: 12 };
const DAY_MS = 86_400_000;
/** `YYYY-MM-DD` of a UTC date. */
const iso = (d) => d.toISOString().slice(0, 10);

/** The first days of the trend's periods (oldest first), ending with the month `month`
 * (`YYYY-MM`): its month and the ones before, or the ISO weeks up to the one its last day is in. */
function periodStarts(month, period) {
  const [y, m] = month.split('-').map(Number);
  const n = TREND_PERIODS[period];
  if (period === 'month') return Array.from({ length: n }, (_, i) => iso(new Date(Date.UTC(y, m - n + i, 1))));
  const last = new Date(Date.UTC(y, m, 0));
  const monday = last.getTime() - ((last.getUTCDay() + 6) % 7) * DAY_MS;
  return Array.from({ length: n }, (_, i) => iso(new Date(monday - (n - 1 - i) * 7 * DAY_MS)));
}

/** The `from` and `to` days of GET /api/stats for the trend of `month` by `period`. */
export function trendRange(month, period) {
  const starts = periodStarts(month, period);
  const [y, m] = month.split('-').map(Number);
  return { from: starts[0], to: iso(new Date(Date.UTC(y, m, 0))) };
}

/** Draws into `el` the `rate` of `rows` (one place's, from GET /api/stats over `trendRange`) over
 * the trend's periods: a point per period with a figure, its value in its title. */
export function drawTrend(el, rows, rate, month, period) {
  const starts = periodStarts(month, period);
  const byPeriod = new Map(rows.map((r) => [r.period, r[rate]]));
  const [w, h, left, top, bottom] = [420, 140, 34, 8, 22];
  const x = (i) => left + (starts.length > 1 ? (i * (w - left - 8)) / (starts.length - 1) : (w - left) / 2);
  const y = (v) => top + (1 - v) * (h - top - bottom);
  const grid = [0, 0.5, 1].map((v) => `<line class="axis" x1="${left}" x2="${w - 4}" y1="${y(v)}" y2="${y(v)}"/><text x="2" y="${y(v) + 3}">${v * 100}%</text>`);
  const segments = [];
  let current = [];
  const dots = [];
  starts.forEach((start, i) => {
    const v = byPeriod.get(start);
    if (v == null) { if (current.length) segments.push(current); current = []; return; }
    current.push(`${x(i)},${y(v)}`);
    dots.push(`<circle class="pt" cx="${x(i)}" cy="${y(v)}" r="3.5" data-period="${esc(start)}"><title>${esc(start)}: ${(v * 100).toFixed(1)}%</title></circle>`);
  });
  if (current.length) segments.push(current);
  const lines = segments.filter((s) => s.length > 1).map((s) => `<polyline class="line" points="${s.join(' ')}"/>`);
  const labels = [[0, 'start'], [starts.length - 1, 'end']].map(([i, anchor]) => `<text x="${x(i)}" y="${h - 6}" text-anchor="${anchor}">${esc(period === 'month' ? starts[i].slice(0, 7) : starts[i].slice(5))}</text>`);
  el.innerHTML = `<svg viewBox="0 0 ${w} ${h}" role="img">${grid.join('')}${lines.join('')}${dots.join('')}${labels.join('')}</svg>`;
}
