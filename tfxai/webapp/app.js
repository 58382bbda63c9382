// tfxai web app: the page. Plain JavaScript modules, nothing loaded from elsewhere, no upload.
// Every text that comes from a file or a model file is inserted with textContent, never as HTML.
"use strict";

import { decodeFile, Engine } from "./engine.js";
import { heatmapToOriginal, overlayRGBA, resizeImage } from "./imaging.js";

const $ = (id) => document.getElementById(id);
const state = { engine: null, results: new Map(), order: [], errors: [], selected: null, queue: Promise.resolve() };
const hooks = { cspViolations: [], offline: { state: "pending", detail: "" }, results: state.results, errors: state.errors };
window.tfxai = hooks;  // read by the browser tests and the benchmark

document.addEventListener("securitypolicyviolation", (e) => hooks.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));

// A new element: properties assigned as they are (className, textContent, dataset entries), then children.
function el(tag, props = {}, ...children) {
  const { dataset = {}, ...rest } = props;
  const node = Object.assign(document.createElement(tag), rest);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const pct = (p) => (typeof p === "number" ? (100 * p).toFixed(1) + " %" : "–");

function fact(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { textContent: name }), el("dd", { textContent: String(value) }));
}

// ------------------------------------------------------------------ model facts and card
function metricText(validation, key) {
  const m = validation.metrics || {}, ci = (validation.ci95 || {})[key];
  if (typeof m[key] !== "number") return null;
  return m[key].toFixed(3) + (ci ? ` [${ci[0].toFixed(3)}, ${ci[1].toFixed(3)}]` : "");
}

function showFacts(engine) {
  const f = engine.facts, list = $("facts");
  list.replaceChildren();
  fact(list, "Classes", f.class_names.join(", "));
  fact(list, "Threshold", f.threshold === null ? null : `${f.threshold.toFixed(3)} on P(${f.positive_class}) (${f.threshold_policy})`);
  fact(list, "Model", `${f.model_type || "?"}, ${f.image_size} × ${f.image_size} px, ${f.channels === 1 ? "grey" : "RGB"}`);
  fact(list, "Resize", f.resize_mode);
  fact(list, "Preprocessing", f.preprocessing);
  fact(list, "Temperature", f.temperature ? `${f.temperature.toFixed(3)} (calibrated probabilities)` : "none (not calibrated)");
  fact(list, "Trained", f.trained);
  for (const key of ["roc_auc", "sensitivity", "specificity", "accuracy"]) {
    fact(list, `Validation ${key.replace("_", "-")}`, metricText(f.validation, key));
  }
  fact(list, "Validation images", (f.validation.metrics || {}).n);
  fact(list, "OOD guard", engine.guard ? `features${engine.guard.pixels ? " + 16×16 thumbnails" : ""}, both in this browser` : "none stored with the model");
  fact(list, "Runtime", `LiteRT.js ${f.runtime.version} (${engine.variant === "simd" ? "WebAssembly relaxed SIMD" : "WebAssembly"})`);
  fact(list, "Loaded in", `${((engine.timings.runtimeMs + engine.timings.modelMs) / 1000).toFixed(2)} s`);
  $("facts-status").textContent = `${f.source_model}, exported ${f.exported.slice(0, 10)} by tfxai ${f.tfxai_version}`;
  const use = f.intended_use.replace(/^Decision support only, not a diagnosis:\s*/i, "");
  $("intended-use-text").textContent = use.charAt(0).toUpperCase() + use.slice(1);
  $("version").textContent = `tfxai ${f.tfxai_version}`;
  if (f.positive_class) $("positive-name").textContent = f.positive_class;
  showCard(engine.card);
}

// The model card, whatever its fields: headings from its keys, nested lists for its values.
function cardNode(value) {
  if (value === null || value === undefined) return document.createTextNode("–");
  if (Array.isArray(value)) return el("ul", {}, ...value.map((v) => el("li", {}, cardNode(v))));
  if (typeof value === "object") {
    return el("ul", {}, ...Object.entries(value).map(([k, v]) => el("li", {}, el("strong", { textContent: k.replace(/_/g, " ") + ": " }), cardNode(v))));
  }
  return document.createTextNode(typeof value === "number" ? String(Number(value.toPrecision(4))) : String(value));
}

function showCard(card) {
  const box = $("card");
  box.replaceChildren();
  for (const [key, value] of Object.entries(card || {})) {
    box.append(el("h3", { textContent: key.replace(/_/g, " ") }), typeof value === "object" ? cardNode(value) : el("p", { textContent: String(value) }));
  }
}

// ------------------------------------------------------------------ offline
function setOffline(ok, text) {
  hooks.offline = { state: ok ? "installed" : "not-installed", detail: text };
  const box = $("offline-status");
  box.className = "offline-status " + (ok ? "ok" : "no");
  box.textContent = text;
}

async function checkOffline(variant) {
  if (!window.isSecureContext) {
    setOffline(false, `Not installed for offline use: this page came over plain http from ${location.host}. Browsers keep ` +
      "an app for offline use only when it comes over https or from this device itself (localhost). It works now, " +
      "but not without the network: see “On a phone, offline” in the tfxai README.");
    return;
  }
  if (!("serviceWorker" in navigator)) {
    setOffline(false, "Not installed for offline use: this browser has no service workers (try Chrome, Edge, Firefox or Safari).");
    return;
  }
  try {
    const registration = await navigator.serviceWorker.register("sw.js");
    await navigator.serviceWorker.ready;
    const answer = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the service worker did not answer")), 60000);
      navigator.serviceWorker.onmessage = (event) => {
        if (event.data && event.data.type === "tfxai-offline") { clearTimeout(timer); resolve(event.data); }
      };
      registration.active.postMessage({ variant });
    });
    if (answer.missing.length) {
      setOffline(false, `Not yet installed for offline use: ${answer.missing.length} file(s) are not stored on this device ` +
        `(${answer.missing.slice(0, 3).join(", ")}). Keep the network on and reload.`);
    } else {
      setOffline(true, "Installed for offline use: this app now opens and classifies with no network.");
    }
  } catch (err) {
    setOffline(false, `Not installed for offline use: ${err.message}`);
  }
}

// ------------------------------------------------------------------ files
function showError(message) {
  state.errors.push(message);
  $("errors").append(el("li", { textContent: message }));
}

function probabilityOf(result) {
  const f = state.engine.facts;
  return f.positive_class ? result.scores[1] : result.scores[result.index];
}

function addFiles(files) {
  const list = Array.from(files || []);
  if (!list.length) return;
  if (!state.engine) { showError("The model is not loaded yet; wait for it, then choose the X-rays again."); return; }
  $("progress-box").hidden = false;
  const total = list.length;
  let done = 0;
  const tick = () => {
    $("progress").value = done / total;
    $("progress-text").textContent = `${done} of ${total} image${total > 1 ? "s" : ""} processed`;
  };
  tick();
  for (const file of list) {
    state.queue = state.queue.then(async () => {
      try {
        const result = await state.engine.classify(file);
        state.results.set(result.name, result);
        if (!state.order.includes(result.name)) state.order.push(result.name);
        renderWorklist();
        if (state.selected === null || total === 1) select(result.name);
      } catch (err) {
        showError(err && err.message ? err.message : `${file.name}: could not be processed (${err})`);
      }
      done += 1;
      tick();
    });
  }
}

function renderWorklist() {
  const body = $("worklist").querySelector("tbody");
  body.replaceChildren();
  const names = [...state.order].sort((a, b) => probabilityOf(state.results.get(b)) - probabilityOf(state.results.get(a)));
  names.forEach((name, i) => {
    const r = state.results.get(name);
    const row = el("tr", { dataset: { name }, className: name === state.selected ? "selected" : "" },
      el("td", { className: "num", textContent: String(i + 1) }), el("td", { className: "name", textContent: name }),
      el("td", { textContent: r.label }), el("td", { className: "num", textContent: pct(probabilityOf(r)) }),
      el("td", { textContent: r.ood.flag ? "check: unusual image" : "" }));
    row.addEventListener("click", () => select(name));
    body.append(row);
  });
  $("worklist-section").hidden = names.length === 0;
}

function drawGrey(canvas, grey, w, h) {
  canvas.width = w;
  canvas.height = h;
  const rgba = new Uint8ClampedArray(w * h * 4);
  for (let i = 0; i < w * h; i++) { rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = grey[i]; rgba[4 * i + 3] = 255; }
  canvas.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
}

function select(name) {
  const r = state.results.get(name), f = state.engine.facts;
  state.selected = name;
  for (const row of $("worklist").querySelectorAll("tbody tr")) row.classList.toggle("selected", row.dataset.name === name);
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  const label = $("detail-label");
  label.textContent = r.label;
  label.className = "label " + (f.positive_class && r.index === 1 ? "positive" : "negative");
  $("detail-probability").textContent = pct(r.scores[r.index]);
  const ood = $("detail-ood");
  ood.hidden = !r.ood.flag;
  ood.textContent = r.ood.flag ? `Check this image: ${r.ood.reason}. The model's answer may mean nothing here.` : "";
  $("detail-note").hidden = !r.note;
  $("detail-note").textContent = r.note;
  const list = $("detail-facts");
  list.replaceChildren();
  if (f.positive_class) {
    const p = r.scores[1];
    fact(list, `P(${f.positive_class})`, `${pct(p)}, ${p >= f.threshold ? "above" : "below"} the threshold ${f.threshold.toFixed(3)}`);
  }
  fact(list, "Probabilities", f.class_names.map((c, k) => `${c} ${pct(r.scores[k])}`).join(" · "));
  fact(list, "Out-of-distribution", Number.isNaN(r.ood.score) && Number.isNaN(r.ood.pixelScore) ? (r.ood.flag ? "flagged" : "no guard")
    : `${r.ood.flag ? "flagged" : "not flagged"} (features ${r.ood.score.toFixed(1)}, thumbnail ${r.ood.pixelScore.toFixed(1)})`);
  fact(list, "Image", `${r.width} × ${r.height} px`);
  fact(list, "Time", `${r.ms.total.toFixed(0)} ms (decode ${r.ms.decode.toFixed(0)}, resize ${r.ms.preprocess.toFixed(0)}, model + Grad-CAM ${r.ms.model.toFixed(0)})`);
  const { grey, width: dw, height: dh } = r.display;
  drawGrey($("original-canvas"), grey, dw, dh);
  const heat = heatmapToOriginal(r.heatmap, r.info, dh, dw);
  const canvas = $("overlay-canvas");
  canvas.width = dw;
  canvas.height = dh;
  canvas.getContext("2d").putImageData(new ImageData(overlayRGBA(grey, heat, dw * dh), dw, dh), 0, 0);
  $("overlay-caption").textContent = `Grad-CAM for ${r.label} (where the model looked, not where the disease is)`;
}

// ------------------------------------------------------------------ CSV
function safeCell(value) {
  const text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && Number.isNaN(Number(text))) return "'" + text;  // spreadsheet formulas (OWASP)
  return text;
}

function saveCsv() {
  const f = state.engine.facts;
  const head = ["file", "label", ...f.class_names.map((c) => `p_${c}`), "threshold", "ood_flag", "ood_reason"];
  const rows = state.order.map((name) => {
    const r = state.results.get(name);
    return [name, r.label, ...r.scores.map((p) => p.toFixed(6)), f.threshold ?? "", r.ood.flag, r.ood.reason];
  });
  const quote = (v) => `"${safeCell(v).replace(/"/g, '""')}"`;
  const text = [head, ...rows].map((row) => row.map(quote).join(",")).join("\r\n") + "\r\n";
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "tfxai_predictions.csv" });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ------------------------------------------------------------------ start
function wire() {
  $("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  const zone = $("drop-zone");
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); } });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("dragging"); addFiles(e.dataTransfer.files); });
  $("csv-button").addEventListener("click", saveCsv);
  $("clear-button").addEventListener("click", () => {
    state.results.clear(); state.order.length = 0; state.errors.length = 0; state.selected = null;
    $("errors").replaceChildren(); $("detail").hidden = true; $("progress-box").hidden = true; renderWorklist();
  });
}

// tfxai's preprocessing in this browser, for the tests: File -> the model input as a plain array.
hooks.prepare = async (file, size, mode) => {
  const image = await decodeFile(file);
  const { pixels, info } = resizeImage(image.grey, image.width, image.height, size, mode);
  return { pixels: Array.from(pixels), info, width: image.width, height: image.height };
};

// Plain arrays of one result, for the tests and the benchmark (typed arrays do not cross WebDriver).
hooks.dump = (name) => {
  const r = state.results.get(name);
  return r && { name: r.name, label: r.label, index: r.index, scores: r.scores, input: Array.from(r.input),
    heatmap: Array.from(r.heatmap), rawMap: Array.from(r.rawMap), ood: r.ood, info: r.info, ms: r.ms,
    width: r.width, height: r.height };
};

wire();
hooks.ready = Engine.load().then((engine) => {
  state.engine = engine;
  hooks.engine = engine;
  hooks.timings = engine.timings;
  showFacts(engine);
  checkOffline(engine.variant);
  return true;
}).catch((err) => {
  $("facts-status").textContent = `The model could not be loaded: ${err.message}`;
  hooks.loadError = err.message;
  throw err;
});
