// The map (Leaflet, loaded as a classic script before the modules: the global `L`): the region's
// community boundaries, the areas' names (map_labels.js), the live cases as dots on one canvas,
// clustered while zoomed out (map_clusters.js), the volunteers on duty, and the routing of the
// opened case (its community, the volunteers offered, the nearest facility), zoomed to.
import { api } from './api.js';
import { isDone, matches, rank } from './cases.js';
import { $, esc } from './dom.js';
import { t } from './i18n.js';
import { CLUSTER_ZOOM, clusterMarkers, initClusters } from './map_clusters.js';
import { initLabels, overlaps } from './map_labels.js';
import { state } from './state.js';

export { clusterList } from './map_clusters.js';
export { shownLabels } from './map_labels.js';

const L = window.L;
/** Dot fill by priority. */
const COLORS = { 1: '#d7263d', 2: '#f46036', 3: '#e2b100', 4: '#3f88c5' };
/** The zoom an opened case is shown at, at least (its dot drawn, not clustered). */
const FOCUS_ZOOM = Math.max(16, CLUSTER_ZOOM);

/** The map's own objects, made by `initMap`; no other module touches them. */
const view = {
  /** The Leaflet map, or null before `initMap`. */
  map: null,
  /** The one canvas every case and volunteer dot is drawn on. */
  canvas: null,
  /** The community boundaries (SVG, so each path is a `.community` element). */
  communityLayer: null,
  /** The case dots that pass the filters. */
  caseLayer: null,
  /** The volunteers on duty. */
  volunteerLayer: null,
  /** The opened case's routing: ring, lines to the volunteers offered, facility. */
  routeLayer: null,
  /** The distance labels of the volunteers offered for the opened case (Leaflet tooltips). */
  volunteerLabels: [],
  /** Each case's dot by case id, whether the filters show it or not. */
  markers: new Map(),
  /** Each community's boundary layer by community id. */
  communityShapes: new Map(),
  /** The zoom level the dots are sized for. */
  zoom: 0,
  /** The layer switcher, rebuilt with the language. */
  layers: null,
  /** The legend, rebuilt with the language. */
  legend: null,
  /** The "whole region" button, rebuilt with the language. */
  wholeRegion: null,
  /** The volunteers by id as /console/volunteers last answered (null before): where each is. */
  volunteers: null,
  /** The volunteers on duty and where, as last drawn: a refresh that changes nothing draws nothing. */
  onDuty: '',
  /** Opens a case: what a click on its dot does (given to `initMap`). */
  select: null,
  /** A dot was added to the canvas since the open P1 dots were last brought to its top. */
  p1Below: false,
  /** The supervision view's fill of each community by id (`shadeCommunities`); empty when closed. */
  shades: new Map(),
  /** The supervision view's legend, or null. */
  shadeLegend: null,
};

/** A community's look when no case is opened: shaded by the supervision view, else faint. */
function plainStyle(id) {
  const fill = view.shades.get(id);
  return fill ? { color: '#4a5b6c', weight: 1, fillColor: fill, fillOpacity: 0.7 } : { color: '#4a5b6c', weight: 1, fillColor: '#8fa3b8', fillOpacity: 0.06 };
}

/** Draws the region (its communities, `geojson`) and makes the layers; `select(id)` opens a case
 * whose dot is clicked. */
export function initMap(geojson, select) {
  const map = view.map = L.map('map', { preferCanvas: true, zoomSnap: 0.25 });
  view.canvas = L.canvas({ padding: 0.3 });
  view.select = select;
  if (state.region.tile_url) L.tileLayer(state.region.tile_url, { attribution: state.region.tile_attribution, maxZoom: 19 }).addTo(map);
  view.communityLayer = L.geoJSON(geojson, {
    renderer: L.svg(),
    style: (feature) => ({ ...plainStyle(feature.properties.id), className: 'community' }),
    onEachFeature: (feature, layer) => {
      view.communityShapes.set(feature.properties.id, layer);
      layer.bindTooltip(feature.properties.name, { sticky: true, className: 'community-label' });
    },
  }).addTo(map);
  view.caseLayer = L.layerGroup().addTo(map);
  view.volunteerLayer = L.layerGroup().addTo(map);
  view.routeLayer = L.layerGroup().addTo(map);
  initClusters(map, view.canvas);
  // Dots grow as the map zooms in: at the whole city, thousands of cases stay readable; the
  // clusters are made anew for the zoom.
  map.on('zoomend', () => {
    view.zoom = map.getZoom();
    for (const m of view.markers.values()) m.setStyle(markerStyle(m.caseRef));
    recluster();
    spreadLabels();
  });
  fitRegion();
  view.zoom = map.getZoom();
  initLabels(map, state.region, geojson);
  L.control.scale().addTo(map);
  view.layers = L.control.layers(null, {}, { collapsed: true }).addTo(map);
  buildLegend();
}

/** Shows the whole region. */
function fitRegion() {
  view.map.fitBounds(state.region.bounds || view.communityLayer.getBounds(), { animate: false });
}

/** The legend, the layer switcher and the "whole region" button, in the page's language. */
export function buildLegend() {
  const map = view.map;
  if (!map) return;
  // Leaflet's own zoom buttons, in the page's language.
  for (const [selector, key] of [['.leaflet-control-zoom-in', 'zoom_in'], ['.leaflet-control-zoom-out', 'zoom_out']]) {
    const button = map.getContainer().querySelector(selector);
    if (button) { button.title = t(key); button.setAttribute('aria-label', t(key)); }
  }
  if (view.wholeRegion) view.wholeRegion.remove();
  view.wholeRegion = L.control({ position: 'topleft' });
  view.wholeRegion.onAdd = () => {
    const button = L.DomUtil.create('button', 'whole-region');
    button.type = 'button';
    button.id = 'whole-region';
    button.textContent = t('whole_region');
    button.title = t('whole_region_hint');
    L.DomEvent.disableClickPropagation(button);
    button.onclick = fitRegion;
    return button;
  };
  view.wholeRegion.addTo(map);
  if (view.legend) view.legend.remove();
  view.legend = L.control({ position: 'bottomleft' });
  view.legend.onAdd = () => {
    const div = L.DomUtil.create('div', 'legend');
    div.innerHTML = [1, 2, 3, 4].map((p) => `<i class="p${p}"></i>${esc(t('priority_n', p))}`).join('<br>') +
      `<br><i class="ring"></i>${esc(t('legend_esc'))}<br><i class="ring-open"></i>${esc(t('legend_open'))}<br><i class="vol"></i>${esc(t('legend_vol'))}`;
    return div;
  };
  view.legend.addTo(map);
  view.layers.remove();
  view.layers = L.control.layers(null, { [t('layer_communities')]: view.communityLayer, [t('layer_cases')]: view.caseLayer, [t('layer_volunteers')]: view.volunteerLayer }, { collapsed: true }).addTo(map);
  // Leaflet titles the switcher's button in English.
  const toggle = view.layers.getContainer().querySelector('.leaflet-control-layers-toggle');
  if (toggle) { toggle.title = t('layers'); toggle.setAttribute('aria-label', t('layers')); }
}

/** A case dot's look: colour by priority, ringed while escalated or not accepted, faded once done,
 * larger as the map zooms in. */
function markerStyle(c) {
  const done = isDone(c);
  const open = rank(c) === 1;
  return {
    renderer: view.canvas, radius: (c.priority === 1 ? 2 : 0) + (view.zoom >= 14 ? 6 : view.zoom >= 13 ? 5 : 4),
    fillColor: COLORS[c.priority] || '#888', fillOpacity: done ? 0.25 : 0.9,
    color: c.escalation_open ? '#b5179e' : open ? '#1d2733' : '#ffffff', weight: c.escalation_open ? 3 : open ? 1.5 : 1,
    opacity: done ? 0.4 : 1,
  };
}

/** Case `c`'s dot as it now stands: made, moved and restyled, or removed once merged away. */
export function updateMarker(c) {
  const existing = view.markers.get(c.id);
  if (c.merged_into) {
    if (existing) { view.caseLayer.removeLayer(existing); view.markers.delete(c.id); }
    return;
  }
  if (existing) {
    if (isP1(c) && !isP1(existing.caseRef)) view.p1Below = true;
    existing.setLatLng([c.lat, c.lon]);
    existing.setStyle(markerStyle(c));
    existing.caseRef = c;
    return;
  }
  const m = L.circleMarker([c.lat, c.lon], markerStyle(c));
  m.caseRef = c;
  m.shown = true;
  m.on('click', () => view.select(c.id));
  view.markers.set(c.id, m); // drawn by the next `recluster`, unless a cluster hides it
}

/** Whether case `c`'s dot is drawn above every other: priority 1 and open. */
const isP1 = (c) => c.priority === 1 && !isDone(c);

/** Brings the open P1 dots to the top of the canvas (drawn last), if a dot was added above them:
 * a red dot is never hidden under a later yellow one or a volunteer. */
function raiseP1() {
  if (!view.p1Below) return;
  view.p1Below = false;
  for (const m of view.markers.values()) if (isP1(m.caseRef) && view.caseLayer.hasLayer(m)) m.bringToFront();
}

/** The dots after a `reset`: those of cases gone removed, every other one updated. */
export function syncMarkers() {
  for (const [id, m] of view.markers) if (!state.cases.has(id)) { view.caseLayer.removeLayer(m); view.markers.delete(id); }
  for (const c of state.cases.values()) updateMarker(c);
}

/** Shows the cases that pass the filters `f`, and only those. */
export function applyMarkerFilter(f) {
  for (const [id, m] of view.markers) {
    const c = state.cases.get(id);
    m.shown = Boolean(c && matches(c, f));
  }
  recluster();
}

/** Draws the dots shown (`shown`) that no cluster hides, and the clusters; open P1 dots on top. */
function recluster() {
  const shown = [];
  for (const m of view.markers.values()) if (m.shown) shown.push(m);
  const { hidden, added } = clusterMarkers(shown, isP1, (c) => COLORS[c.priority] || '#888', (c) => c.priority + (isDone(c) ? 10 : 0));
  if (added) view.p1Below = true;
  for (const m of view.markers.values()) {
    const want = m.shown && !hidden.has(m), drawn = view.caseLayer.hasLayer(m);
    if (want && !drawn) { view.caseLayer.addLayer(m); view.p1Below = true; } else if (!want && drawn) view.caseLayer.removeLayer(m);
  }
  raiseP1();
}

/** Reads the volunteers and redraws those on duty if they changed. */
export async function loadVolunteers() {
  try {
    const { volunteers } = await api('/console/volunteers');
    view.volunteers = new Map(volunteers.map((v) => [v.id, v]));
    const onDuty = volunteers.filter((v) => v.available).map((v) => `${v.id}@${v.lon},${v.lat}`).join(';');
    if (onDuty === view.onDuty) return; // unchanged: no redraw
    view.onDuty = onDuty;
    view.volunteerLayer.clearLayers();
    for (const v of volunteers) {
      if (!v.available) continue;
      view.volunteerLayer.addLayer(L.circleMarker([v.lat, v.lon], { renderer: view.canvas, radius: 2, stroke: false, fillColor: '#2a9d8f', fillOpacity: 0.6, interactive: false }));
    }
    view.p1Below = true;
    raiseP1();
  } catch (_) { /* shown again on the next refresh */ }
}

/** Highlights the community `communityId` (none for null). */
function highlight(communityId) {
  for (const [id, layer] of view.communityShapes) {
    layer.setStyle(id === communityId ? { color: '#b5179e', weight: 3, fillOpacity: 0.15, fillColor: '#b5179e' } : plainStyle(id));
  }
}

/** Draws the routing of the opened case `r` (as GET /api/cases/{id} answers): its community, a
 * line to each volunteer offered and, beside the volunteer, who and how far (`spreadLabels`), the
 * nearest facility; `pan` centres the case. */
export function drawRouting(r, pan) {
  view.routeLayer.clearLayers();
  view.volunteerLabels = [];
  highlight(r.community?.id);
  const here = [r.case.location.lat, r.case.location.lon];
  view.routeLayer.addLayer(L.circleMarker(here, { radius: 12, color: '#b5179e', weight: 2, fill: false, interactive: false }));
  const offered = new Map();
  for (const v of r.decision.volunteers) offered.set(v.id, v.distance_m);
  for (const o of r.offers || []) offered.set(o.volunteer_id, o.distance_m);
  for (const [id, distance] of offered) {
    const v = view.volunteers?.get(id);
    if (!v) continue;
    view.routeLayer.addLayer(L.polyline([here, [v.lat, v.lon]], { color: '#2a9d8f', weight: 2, dashArray: '4 4' }));
    // The volunteers have no name in the console (their status carries none): their id.
    const dot = L.circleMarker([v.lat, v.lon], { radius: 5, color: '#2a9d8f', fillColor: '#fff', fillOpacity: 1, weight: 2 })
      .bindTooltip(`${id}: ${t('metres', Math.round(distance))}`, { permanent: true, direction: 'right', offset: [LABEL_GAP, 0], className: 'volunteer-label' });
    view.routeLayer.addLayer(dot);
    view.volunteerLabels.push(dot.getTooltip());
  }
  const f = r.decision.facility;
  if (f) view.routeLayer.addLayer(L.circleMarker([f.location.lat, f.location.lon], { radius: 6, color: '#3f88c5', weight: 2 }).bindTooltip(`${f.name} · ${t('metres', Math.round(f.distance_m))}`));
  if (pan) focus(here);
  spreadLabels();
}

/** Pixels between a volunteer's dot and its label, and between two labels stacked. */
const LABEL_GAP = 8, LABEL_SPACE = 2;

/** Places each volunteer's label to the right of their dot, moved down below those above it that
 * it would cover: volunteers a few metres apart are a few pixels apart, and their labels, written
 * at their lines' middles or their dots, would lie on one another. Labels are placed from the
 * highest dot down, so the stack keeps the dots' order. Again at each zoom. */
function spreadLabels() {
  const map = view.map, placed = [];
  const labels = view.volunteerLabels.filter((tip) => tip.getElement())
    .map((tip) => ({ tip, at: map.latLngToContainerPoint(tip.getLatLng()) }))
    .sort((a, b) => a.at.y - b.at.y || a.at.x - b.at.x);
  for (const { tip, at } of labels) {
    const el = tip.getElement(), w = el.offsetWidth, h = el.offsetHeight;
    const box = { x0: at.x + LABEL_GAP, x1: at.x + LABEL_GAP + w, y0: at.y - h / 2, y1: at.y + h / 2 };
    for (let below; (below = placed.filter((b) => overlaps(box, [b]))).length;) {
      const y0 = Math.max(...below.map((b) => b.y1)) + LABEL_SPACE;
      box.y1 += y0 - box.y0; box.y0 = y0;
    }
    placed.push(box);
    tip.options.offset = L.point(LABEL_GAP, box.y0 - (at.y - h / 2));
    tip.update();
  }
}

/** Zooms in to `here` (to `FOCUS_ZOOM`, or closer if already), centred in what the detail panel
 * leaves visible of the map. */
function focus(here) {
  const map = view.map, zoom = Math.max(map.getZoom(), FOCUS_ZOOM);
  map.setView(map.unproject(map.project(here, zoom).add([covered() / 2, 0]), zoom), zoom, { animate: false });
}

/** How much of the map's right side the detail panel covers, pixels, with a margin (none when it
 * is closed, or, on a narrow screen, lies over the board instead). */
function covered() {
  const detail = $('detail');
  if (detail.hidden) return 0;
  const map = view.map.getContainer().getBoundingClientRect(), panel = detail.getBoundingClientRect();
  return panel.left < map.right ? map.right - panel.left + 10 : 0;
}

/** Zooms to the communities `ids` (the board's filter: one community, or a 街道's), those with a
 * boundary, in what `panel` (an element over the map's left side, if given) leaves visible. */
export function zoomToCommunities(ids, panel) {
  const layers = ids.map((id) => view.communityShapes.get(id)).filter(Boolean);
  if (!layers.length) return;
  const bounds = layers.reduce((b, layer) => b.extend(layer.getBounds()), L.latLngBounds(layers[0].getBounds()));
  const left = panel ? Math.max(0, panel.getBoundingClientRect().right - view.map.getContainer().getBoundingClientRect().left) : 0;
  view.map.fitBounds(bounds, { paddingTopLeft: [40 + left, 40], paddingBottomRight: [40, 40], maxZoom: FOCUS_ZOOM, animate: false });
}

/** Fills each community of `fills` (id → colour) with its colour, the others as usual, with a
 * legend titled `title` of `items` (`[colour, label]`; none: no legend) — the supervision view's map. */
export function shadeCommunities(fills, title, items) {
  view.shades = fills;
  for (const [id, layer] of view.communityShapes) layer.setStyle(plainStyle(id));
  if (view.shadeLegend) { view.shadeLegend.remove(); view.shadeLegend = null; }
  // Before the map is made (the view opened while the region loads) the boundaries take their
  // shades when drawn; the legend comes with the next shading.
  if (!items.length || !view.map) return;
  view.shadeLegend = L.control({ position: 'bottomright' });
  view.shadeLegend.onAdd = () => {
    const div = L.DomUtil.create('div', 'legend shade-legend');
    div.id = 'shade-legend';
    div.innerHTML = `<b>${esc(title)}</b><br>` + items.map(([, label]) => `<i class="box"></i>${esc(label)}`).join('<br>');
    // Set through the DOM: the page's CSP refuses style attributes in markup.
    div.querySelectorAll('i.box').forEach((box, i) => { box.style.background = items[i][0]; });
    return div;
  };
  view.shadeLegend.addTo(view.map);
}

/** The fill colour community `id`'s boundary is drawn with, or null without one (for the tests). */
export function communityFill(id) { return view.communityShapes.get(id)?.getElement()?.getAttribute('fill') ?? null; }

/** Removes the routing drawn by `drawRouting`. */
export function clearRouting() {
  view.routeLayer.clearLayers();
  view.volunteerLabels = [];
  highlight(null);
}

/** The ids of the cases the map shows, as dots or in clusters (for the tests). */
export function mapCaseIds() { return [...view.markers.keys()].filter((id) => view.markers.get(id).shown); }

/** The map's view (for the tests): its zoom, the region's zoom, what it shows (`[[s, w], [n, e]]`),
 * and the point centred in what the detail panel leaves visible (`focus`, `[lat, lon]`). */
export function mapView() {
  const map = view.map, b = map.getBounds(), size = map.getSize();
  const f = map.containerPointToLatLng([(size.x - covered()) / 2, size.y / 2]);
  return { zoom: map.getZoom(), regionZoom: map.getBoundsZoom(state.region.bounds || view.communityLayer.getBounds()), bounds: [[b.getSouth(), b.getWest()], [b.getNorth(), b.getEast()]], focus: [f.lat, f.lng] };
}

/** Where case `id`'s dot is in the window (client pixels), or null without one (for the tests). */
export function dotPoint(id) {
  const m = view.markers.get(id);
  if (!m) return null;
  const p = view.map.latLngToContainerPoint(m.getLatLng()), box = view.map.getContainer().getBoundingClientRect();
  return { x: box.left + p.x, y: box.top + p.y };
}

/** Drags the map 6 pixels (`n`: the frame's number), as Leaflet's own dragging does: the map's
 * pane moved and `move` fired at each frame, `moveend` (the layers redrawn, the names placed)
 * when the drag ends, every 60 frames, turning back east or west. For measuring frame times
 * while a dispatcher drags the map. */
export function panStep(n) {
  const map = view.map, pane = map.getPane('mapPane');
  L.DomUtil.setPosition(pane, L.DomUtil.getPosition(pane).add([n % 120 < 60 ? 6 : -6, 0]));
  map.fire('move');
  if (n % 60 === 59) map.fire('moveend');
}

/** How many community boundaries are drawn (for the tests). */
export function communityCount() { return view.communityShapes.size; }
