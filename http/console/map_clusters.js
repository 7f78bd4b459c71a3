// Dense case dots as clusters while the map is zoomed out: the shown dots are grouped by a grid of
// `CELL`-pixel squares at the map's zoom, and a square holding `MIN` or more is drawn as one
// bubble (on the dots' canvas, in the colour of its most urgent case) with the count written on
// it (a plain element in one pane, not a marker each: one composited layer, not one a bubble);
// a click on a bubble zooms to its cases. An open priority 1 case is counted in its square's
// bubble but keeps its own dot, drawn above the bubble (map.js raises it): it is never hidden.
// From `CLUSTER_ZOOM` on, every dot is drawn.
const L = window.L;

/** From this zoom on, no clusters. */
export const CLUSTER_ZOOM = 15;
/** A grid square's side, in pixels. */
const CELL = 60;
/** A square with fewer dots than this draws them. */
const MIN = 3;

/** The clusters' own objects, made by `initClusters`. */
const clusters = {
  /** The Leaflet map. */
  map: null,
  /** The dots' canvas, which the bubbles are drawn on too. */
  canvas: null,
  /** The bubbles. */
  layer: null,
  /** The pane the counts are written in. */
  pane: null,
  /** Each square's bubble by its key: `{bubble, label, at, n, fill, members}`. */
  cells: new Map(),
};

/** Makes the layers of the clusters on `map`, their bubbles on `canvas`. */
export function initClusters(map, canvas) {
  clusters.map = map;
  clusters.canvas = canvas;
  clusters.pane = map.createPane('clusterCounts');
  clusters.pane.style.zIndex = 450; // above the dots' canvas (400)
  clusters.pane.style.pointerEvents = 'none';
  clusters.layer = L.layerGroup().addTo(map);
  // The counts stand at layer points: hidden while the map zooms, placed again once the view is
  // reset (the bubbles are made anew at `zoomend`).
  map.on('zoomstart', () => { clusters.pane.hidden = true; });
  map.on('viewreset zoomend', () => { for (const cell of clusters.cells.values()) place(cell); clusters.pane.hidden = false; });
}

/** Writes a bubble's count at its place. */
function place(cell) {
  const p = clusters.map.latLngToLayerPoint(cell.at);
  cell.label.style.left = `${Math.round(p.x) - 22}px`;
  cell.label.style.top = `${Math.round(p.y) - 8}px`;
}

/** Groups `markers` (the dots that pass the filters; each with its case, `caseRef`) and draws the
 * bubbles of the dense squares: `{hidden, added}`, the markers they hide and whether a bubble was
 * added (drawn above every dot until the P1s are raised again); `keep(c)` tells a case whose dot
 * stays drawn (an open P1), `color(c)` a case's colour, `urgency(c)` how urgent (lower: more). */
export function clusterMarkers(markers, keep, color, urgency) {
  const map = clusters.map, zoom = map.getZoom(), hidden = new Set();
  let added = false;
  const squares = new Map();
  if (zoom < CLUSTER_ZOOM) {
    for (const m of markers) {
      const p = map.project(m.getLatLng(), zoom);
      const key = `${Math.floor(p.x / CELL)}:${Math.floor(p.y / CELL)}`;
      let square = squares.get(key);
      if (!square) squares.set(key, square = []);
      square.push(m);
    }
  }
  const seen = new Set();
  for (const [key, members] of squares) {
    if (members.length < MIN) continue;
    seen.add(key);
    // The bubble's colour: its most urgent case of those it hides (a kept P1 shows itself).
    let lat = 0, lon = 0, top = null;
    for (const m of members) {
      const ll = m.getLatLng();
      lat += ll.lat; lon += ll.lng;
      if (keep(m.caseRef)) continue;
      hidden.add(m);
      if (!top || urgency(m.caseRef) < urgency(top)) top = m.caseRef;
    }
    top ??= members[0].caseRef;
    const at = [lat / members.length, lon / members.length], n = members.length, fill = color(top);
    let cell = clusters.cells.get(key);
    if (!cell) {
      const bubble = L.circleMarker(at, { renderer: clusters.canvas, radius: 12, color: '#ffffff', weight: 2, fillOpacity: 0.85, fillColor: fill });
      bubble.on('click', () => map.fitBounds(L.latLngBounds(cell.members.map((m) => m.getLatLng())), { maxZoom: CLUSTER_ZOOM, padding: [40, 40] }));
      const label = document.createElement('div');
      label.className = 'cluster-count';
      label.textContent = String(n);
      cell = { bubble, label, at, n, fill, members };
      clusters.cells.set(key, cell);
      clusters.layer.addLayer(bubble);
      clusters.pane.appendChild(label);
      added = true;
    } else {
      cell.bubble.setLatLng(at);
      if (cell.n !== n) cell.label.textContent = String(n);
    }
    cell.at = at;
    place(cell);
    if (cell.n !== n || cell.fill !== fill || !cell.sized) {
      cell.bubble.setStyle({ fillColor: fill, radius: 10 + 4 * Math.log10(n) });
      cell.sized = true;
    }
    cell.n = n; cell.fill = fill; cell.members = members;
  }
  for (const [key, cell] of clusters.cells) {
    if (seen.has(key)) continue;
    clusters.layer.removeLayer(cell.bubble);
    cell.label.remove();
    clusters.cells.delete(key);
  }
  return { hidden, added };
}

/** The bubbles drawn, `{n, lat, lon}` each (for the tests). */
export function clusterList() {
  return [...clusters.cells.values()].map((c) => ({ n: c.n, lat: c.bubble.getLatLng().lat, lon: c.bubble.getLatLng().lng }));
}
