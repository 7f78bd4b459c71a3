// The app's service worker: keeps the app's own files so that, with no network, the phone still
// opens the app (and says it is offline) instead of the browser's error page. The network comes
// first, so an update reaches the phone at once; the API is never cached (offers are live).
const CACHE = 'linkbus-volunteer-1';
const SHELL = ['/volunteer/', '/volunteer/app.js', '/volunteer/i18n.js', '/volunteer/map.js', '/volunteer/app.css',
  '/volunteer/manifest.webmanifest', '/volunteer/icon.svg', '/volunteer/vendor/leaflet/leaflet.js',
  '/volunteer/vendor/leaflet/leaflet.css'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin || !SHELL.includes(url.pathname)) return;
  event.respondWith(fetch(event.request)
    .then((response) => {
      const copy = response.clone();
      if (response.ok) caches.open(CACHE).then((cache) => cache.put(event.request, copy));
      return response;
    })
    .catch(() => caches.match(event.request)));
});
