// The service worker: keeps the whole app on the device, so it opens and classifies with no network.
// `tfxai export --target web` writes the file list and a cache name derived from the files' hashes
// below; a new export gets a new cache and the old one is deleted once the new one is complete.
"use strict";

/*__TFXAI_PRECACHE__*/

// LiteRT.js's own test for relaxed SIMD: the runtime build this browser will load.
const RELAXED_SIMD = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13,
  0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11]);

function variant() {
  try {
    return WebAssembly.validate(RELAXED_SIMD) ? "simd" : "compat";
  } catch (err) {
    return "compat";
  }
}

// Only this origin's own files, scope-relative: the cache name carries the scope, so two apps on
// one host keep separate copies.
const CACHE = PRECACHE.cache + "@" + new URL(self.registration.scope).pathname;
const needed = (which) => [...PRECACHE.shell, ...PRECACHE.variants[which]];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(needed(variant()))).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  const scope = "@" + new URL(self.registration.scope).pathname;
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("tfxai-") && k.endsWith(scope) && k !== CACHE)
      .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(caches.open(CACHE).then(async (cache) => {
    const hit = await cache.match(request, { ignoreSearch: true }) ||
      (request.mode === "navigate" ? await cache.match("./") : undefined);
    return hit || fetch(request);
  }));
});

// The page asks which files are missing from the cache for the runtime build it loaded (and has
// them cached when the two tests for relaxed SIMD disagree): {cache, missing: [...]}.
self.addEventListener("message", (event) => {
  const which = event.data && event.data.variant;
  if (!which || !PRECACHE.variants[which]) return;
  event.waitUntil(caches.open(CACHE).then(async (cache) => {
    const missing = [];
    for (const url of needed(which)) if (!(await cache.match(url))) missing.push(url);
    const extra = missing.filter((url) => PRECACHE.variants[which].includes(url));
    if (extra.length) await cache.addAll(extra).catch(() => {});
    const still = [];
    for (const url of needed(which)) if (!(await cache.match(url))) still.push(url);
    event.source.postMessage({ type: "tfxai-offline", cache: CACHE, missing: still });
  }));
});
