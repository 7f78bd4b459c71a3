// The areas' names on the map, by zoom level: the districts' when the whole region is in view,
// the sub-districts' (街道) closer, the communities' (社区) closest. Each level is shown from the
// zoom at which its typical area (the median size) spans `MIN_PX` pixels; a level of one area
// (San Francisco's one district) is left out when another exists. Each name sits at its area's
// label point, computed once by the server (the region file's centre, else a point deep inside;
// `/console/region` `areas`, `/console/region/communities` `label`), larger areas placed first;
// a name that would overlap one already placed is left out. Redrawn once the map stops moving.

/** How many pixels the median area of a level must span for the level to be labelled. */
const MIN_PX = 48;
/** At most this many names at once. */
const MAX_LABELS = 400;
/** A label's height and its font (app.css's `.map-label` agrees), for measuring. */
const LABEL_H = 16;
const FONT = { district: '600 14px sans-serif', sub_district: '600 12px sans-serif', community: '11px sans-serif' };

/** The labels' own objects, made by `initLabels`. */
const labels = {
  /** The Leaflet map. */
  map: null,
  /** The pane the names are written in (below the case dots, above the boundaries). */
  pane: null,
  /** The levels, coarsest first: `{key, items: [{name, lat, lon, size}], median}`. */
  levels: [],
  /** A canvas context to measure names with, and the widths measured, by font and name. */
  measure: null,
  widths: new Map(),
};

/** A registry name as a label: without the office's suffix (`东华门街道办事处` → `东华门街道`,
 * `多福巷社区居委会` → `多福巷社区`) or a note in brackets. */
export function shortName(name) {
  return name.replace(/（.*?）|\(.*?\)/g, '').replace(/(居民委员会|村民委员会|居委会|村委会|办事处)$/, '').trim();
}

/** Makes the labels of the region `region` (`/console/region`) and its communities `geojson`. */
export function initLabels(map, region, geojson) {
  labels.map = map;
  labels.pane = map.createPane('labels');
  labels.pane.style.zIndex = 350; // above the tiles (200), below the boundaries' faint fill and the dots (400)
  labels.pane.style.pointerEvents = 'none';
  labels.measure = document.createElement('canvas').getContext('2d');
  const item = (name, label, size) => ({ name: shortName(name), lat: label[0], lon: label[1], size });
  const areas = region.areas || [];
  const levels = [
    { key: 'district', items: areas.filter((a) => a.level === 'district').map((a) => item(a.name, a.label, a.size_m)) },
    { key: 'sub_district', items: areas.filter((a) => a.level === 'sub_district').map((a) => item(a.name, a.label, a.size_m)) },
    { key: 'community', items: geojson.features.filter((f) => f.properties.label).map((f) => item(f.properties.name, f.properties.label, f.properties.size_m)) },
  ].filter((l) => l.items.length > 0);
  labels.levels = levels.filter((l) => l.items.length > 1 || levels.length === 1);
  for (const l of labels.levels) {
    l.items.sort((a, b) => b.size - a.size);
    l.median = l.items[Math.floor(l.items.length / 2)].size;
  }
  map.on('zoomstart', () => { labels.pane.hidden = true; });
  map.on('moveend', placeLabels);
  placeLabels();
}

/** The level labelled at the map's zoom: the finest whose median area spans `MIN_PX`, else the
 * coarsest. */
function levelNow() {
  const map = labels.map;
  const metresPerPx = 40075016.686 * Math.cos(map.getCenter().lat * Math.PI / 180) / (256 * 2 ** map.getZoom());
  let chosen = labels.levels[0];
  for (const l of labels.levels) if (l.median / metresPerPx >= MIN_PX) chosen = l;
  return chosen;
}

function width(font, name) {
  const key = font + name;
  let w = labels.widths.get(key);
  if (w === undefined) { labels.measure.font = font; w = Math.ceil(labels.measure.measureText(name).width) + 6; labels.widths.set(key, w); }
  return w;
}

/** Whether the box `box` (`{x0, x1, y0, y1}`, pixels) overlaps any of `placed`. */
export const overlaps = (box, placed) => placed.some((b) => b.x0 < box.x1 && box.x0 < b.x1 && b.y0 < box.y1 && box.y0 < b.y1);

/** Writes the names of the level the zoom calls for that are in view, skipping any that would
 * overlap one already written. */
function placeLabels() {
  const map = labels.map, pane = labels.pane;
  pane.textContent = '';
  pane.hidden = false;
  const level = levelNow();
  if (!level) return;
  const view = map.getBounds(), placed = [], font = FONT[level.key];
  const frag = document.createDocumentFragment();
  for (const it of level.items) {
    if (placed.length >= MAX_LABELS) break;
    if (!view.contains([it.lat, it.lon])) continue;
    const p = map.latLngToLayerPoint([it.lat, it.lon]), w = width(font, it.name);
    const box = { x0: p.x - w / 2, x1: p.x + w / 2, y0: p.y - LABEL_H / 2, y1: p.y + LABEL_H / 2 };
    if (overlaps(box, placed)) continue;
    placed.push(box);
    const el = document.createElement('div');
    el.className = `map-label ${level.key}`;
    el.dataset.level = level.key;
    el.textContent = it.name;
    el.style.left = `${Math.round(box.x0)}px`;
    el.style.top = `${Math.round(box.y0)}px`;
    el.style.width = `${w}px`;
    frag.appendChild(el);
  }
  pane.appendChild(frag);
}

/** The names written now, `{level, text}` each (for the tests). */
export function shownLabels() {
  return [...labels.pane?.querySelectorAll('.map-label') ?? []].map((el) => ({ level: el.dataset.level, text: el.textContent }));
}
