// A small map of one offer, without tiles (no tile server, no third party): the outline of the
// case's community, the case, the facility to fetch and the volunteer, on a blank Leaflet map.

/** Draws the offer `view` in `el`, with the volunteer at `me` ({lat, lon} or null); returns the
 * Leaflet map (to remove with the card). */
export function drawMap(el, view, me) {
  const map = L.map(el, { zoomControl: false, attributionControl: false, preferCanvas: true });
  const points = [[view.location.lat, view.location.lon]];
  for (const ring of view.outline || []) {
    L.polygon(ring.map(([lon, lat]) => [lat, lon]), { color: '#555', weight: 1, fillOpacity: 0.05 }).addTo(map);
  }
  L.circleMarker(points[0], { radius: 9, color: '#b3261e', fillColor: '#b3261e', fillOpacity: 0.9 }).addTo(map);
  if (view.facility) {
    const at = [view.facility.location.lat, view.facility.location.lon];
    points.push(at);
    L.circleMarker(at, { radius: 7, color: '#1b7f3b', fillColor: '#1b7f3b', fillOpacity: 0.9 }).addTo(map);
    L.polyline([at, points[0]], { color: '#1b7f3b', weight: 2, dashArray: '4 4' }).addTo(map);
  }
  if (me) {
    const at = [me.lat, me.lon];
    points.push(at);
    L.circleMarker(at, { radius: 7, color: '#1a56b3', fillColor: '#1a56b3', fillOpacity: 0.9 }).addTo(map);
    L.polyline([at, points[0]], { color: '#1a56b3', weight: 2 }).addTo(map);
  }
  map.fitBounds(L.latLngBounds(points).pad(0.4), { maxZoom: 17 });
  return map;
}
