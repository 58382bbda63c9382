// tfxai serve: the triage page. Plain JavaScript, no libraries, nothing loaded from elsewhere.
// Every text that comes from a file or the server is inserted with textContent, never as HTML.
"use strict";

const state = {
  token: null,
  model: null,
  items: [],        // {id, file, name, result | null, error | null, detail | null}
  selected: null,   // item id
  nextId: 1,
  busy: false,
  job: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const pct = (p) => (p === null || p === undefined ? "–" : (100 * p).toFixed(1) + " %");

// ------------------------------------------------------------------ talking to the server
function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function api(path, options) {
  const response = await fetch(path, { ...(options || {}), headers: { ...headers(), ...((options || {}).headers || {}) } });
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) {
    body = await response.json();
  }
  if (response.status === 401) {
    showTokenForm();
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `the server answered ${response.status} ${response.statusText}`;
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return body;
}

function readToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match) {
    sessionStorage.setItem("tfxai-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname);  // keep the token out of the address bar
  }
  state.token = sessionStorage.getItem("tfxai-token");
}

function showTokenForm() {
  $("token-form").hidden = false;
  $("facts-status").textContent = "This server needs its access token.";
}

// ------------------------------------------------------------------ the model's facts
function fact(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: name }), el("dd", { text: String(value) }));
}

function metric(m, key) {
  return m && typeof m[key] === "number" ? m[key].toFixed(3) : null;
}

function renderModel(model) {
  state.model = model;
  const list = $("facts");
  list.replaceChildren();
  $("facts-status").textContent = model.file;
  fact(list, "Classes", model.class_names.join(", "));
  fact(list, "Model", model.model_type ? `${model.model_type} (${model.kind})` : model.kind);
  fact(list, "Input", `${model.image_size} × ${model.image_size} px, ${model.channels === 1 ? "grey" : "RGB"}, ${model.resize_mode}`);
  fact(list, "Threshold", `${model.threshold.toFixed(3)}${model.threshold_policy ? " (" + model.threshold_policy + ", chosen on validation)" : ""}`);
  fact(list, "Calibration", model.temperature ? `temperature ${model.temperature.toFixed(3)}` : "none (probabilities not calibrated)");
  const data = model.data || {};
  fact(list, "Training data", data.source);
  if (data.train_counts) fact(list, "Training images", Object.entries(data.train_counts).map(([k, v]) => `${k} ${v}`).join(", "));
  fact(list, "Trained", model.trained || (model.training === "unfinished" ? "unfinished run" : null));
  const m = model.val_metrics;
  if (m) {
    const parts = [["ROC-AUC", metric(m, "roc_auc")], ["sensitivity", metric(m, "sensitivity") || metric(m, "recall")],
      ["specificity", metric(m, "specificity")], ["accuracy", metric(m, "accuracy")]].filter(([, v]) => v !== null);
    fact(list, "Validation", parts.map(([k, v]) => `${k} ${v}`).join(", "));
  } else {
    fact(list, "Validation", "no validation numbers stored with this model");
  }
  fact(list, "OOD guard", model.ood_guard.present ? "on (flags images unlike the training X-rays)" : "none in this model (blank images only)");
  fact(list, "Limits", `${model.limits.max_upload_mb} MB per upload, ${(model.limits.max_pixels / 1e6).toFixed(0)} Mpx per image`);
  $("band-text").textContent = "±" + model.uncertain_band.toFixed(2);
  $("prob-head").textContent = model.class_names.length === 2 ? `P(${model.class_names[1]})` : "P(not " + model.class_names[0] + ")";
  $("version").textContent = "tfxai " + model.tfxai_version;
  $("explain-hint").textContent = model.explain_methods.map(methodTitle).join(", ") +
    " side by side, each with its deletion / insertion score.";
  if (!model.gradcam) $("overlay-caption").textContent = "no Grad-CAM for a .tflite model";
}

// ------------------------------------------------------------------ the model card
// Rendered generically from its JSON sections (tfxai/model_card.py), text only.
const cardLabel = (key) => key.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

function cardValue(value) {
  if (value === null || value === undefined) return el("span", { class: "muted", text: "–" });
  if (Array.isArray(value)) {
    if (value.length === 2 && value.every((v) => typeof v === "number")) return `[${value[0].toFixed(3)}, ${value[1].toFixed(3)}]`;
    return el("ul", null, ...value.map((v) => el("li", null, cardValue(v))));
  }
  if (typeof value === "object") {
    const list = el("dl");
    for (const [k, v] of Object.entries(value)) list.append(el("dt", { text: cardLabel(k) }), el("dd", null, cardValue(v)));
    return list;
  }
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return String(value);
}

function renderCard(answer) {
  const body = $("card-body");
  body.replaceChildren();
  const card = answer.model_card;
  if (!card) {
    $("card-status").textContent = answer.message;
    return;
  }
  $("card-status").textContent = card.schema;
  for (const [key, value] of Object.entries(card)) {
    if (key === "schema") continue;
    body.append(el("h3", { text: key === "ood_guard" ? "Out-of-distribution guard" : cardLabel(key) }), cardValue(value));
  }
}

async function loadCard() {
  try {
    renderCard(await api("/api/model-card"));
  } catch (err) {
    if (err.status !== 401) $("card-status").textContent = "Could not read the model card: " + err.message;
  }
}

function methodTitle(m) {
  return { "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "faster-scorecam": "Faster Score-CAM", "lime": "LIME" }[m] || m;
}

async function loadModel() {
  try {
    renderModel(await api("/api/model"));
    $("token-form").hidden = true;
    loadCard();
  } catch (err) {
    if (err.status !== 401) $("facts-status").textContent = "Could not read the model's facts: " + err.message;
  }
}

// ------------------------------------------------------------------ uploads
function extensionOk(name) {
  const exts = state.model ? state.model.accepted_extensions : [".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"];
  const lower = name.toLowerCase();
  return exts.some((e) => lower.endsWith(e));
}

function addError(message) {
  $("errors").append(el("li", { text: message }));
}

function chunks(items) {
  const limits = state.model ? state.model.limits : { max_files_per_request: 16, max_upload_mb: 64 };
  const maxFiles = Math.max(1, Math.min(16, limits.max_files_per_request));
  const maxBytes = 0.8 * limits.max_upload_mb * 1024 * 1024;
  const out = [];
  let current = [], bytes = 0;
  for (const item of items) {
    if (current.length && (current.length >= maxFiles || bytes + item.file.size > maxBytes)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += item.file.size;
  }
  if (current.length) out.push(current);
  return out;
}

function setProgress(done, total, text) {
  $("progress-box").hidden = false;
  $("progress").max = Math.max(1, total);
  $("progress").value = done;
  $("progress-text").textContent = text || `${done} of ${total} image${total === 1 ? "" : "s"} processed`;
}

async function handleFiles(fileList, fromFolder) {
  if (state.busy) {
    addError("Still working on the previous upload; wait for it to finish.");
    return;
  }
  let files = Array.from(fileList).filter((f) => !f.name.startsWith("."));
  if (fromFolder) {
    const skipped = files.filter((f) => !extensionOk(f.name));
    files = files.filter((f) => extensionOk(f.name));
    if (skipped.length) addError(`${skipped.length} file(s) in the folder are not X-ray images by their extension and were skipped.`);
  }
  if (!files.length) {
    addError("No image to process.");
    return;
  }
  const items = files.map((file) => ({
    id: state.nextId++, file, name: file.webkitRelativePath || file.name, result: null, error: null, detail: null,
  }));
  state.items.push(...items);
  state.busy = true;
  $("worklist-section").hidden = false;
  renderWorklist();
  try {
    if (items.length === 1) {
      setProgress(0, 1, "processing 1 image…");
      await predictOne(items[0]);
      setProgress(1, 1);
      selectItem(items[0].id);
    } else {
      let done = 0;
      setProgress(0, items.length);
      for (const group of chunks(items)) {
        await predictBatch(group);
        done += group.length;
        setProgress(done, items.length);
        renderWorklist();
      }
      const first = sortedItems().find((i) => i.result && items.includes(i));
      if (first) selectItem(first.id);
    }
  } finally {
    state.busy = false;
    renderWorklist();
  }
}

async function predictOne(item) {
  const form = new FormData();
  form.append("file", item.file, item.name);
  try {
    const result = await api("/api/predict?original=true", { method: "POST", body: form });
    item.result = result;
    item.detail = result;
  } catch (err) {
    item.error = err.message;
    addError(err.message);
  }
}

async function predictBatch(group) {
  const form = new FormData();
  for (const item of group) form.append("file", item.file, item.name);
  try {
    const body = await api("/api/predict/batch?overlay_size=160", { method: "POST", body: form });
    body.results.forEach((r, i) => {
      if (r.error) {
        group[i].error = r.error;
        addError(r.error);
      } else {
        group[i].result = r;
      }
    });
  } catch (err) {
    for (const item of group) item.error = err.message;
    addError(err.message);
  }
}

// ------------------------------------------------------------------ the worklist
function sortedItems() {
  // Results first, most likely positive on top; then images still waiting; then failures.
  const rank = (i) => (i.result ? 0 : i.error ? 2 : 1);
  return [...state.items].sort((a, b) => rank(a) - rank(b) ||
    (a.result && b.result ? b.result.positive_probability - a.result.positive_probability : 0) || a.id - b.id);
}

function renderWorklist() {
  const body = $("worklist").tBodies[0];
  body.replaceChildren();
  sortedItems().forEach((item, index) => {
    const r = item.result;
    const classes = [r ? (r.uncertain ? "uncertain" : "") : item.error ? "error" : "pending",
      item.id === state.selected ? "selected" : "", r && r.ood_flag ? "ood-row" : ""].filter(Boolean).join(" ");
    const row = el("tr", { class: classes, "data-id": item.id, "data-name": item.name, tabIndex: 0 });
    row.append(el("td", { text: index + 1 }));
    const thumb = el("td", { class: "thumb" });
    if (r && r.overlay_png) thumb.append(el("img", { src: "data:image/png;base64," + r.overlay_png, alt: "" }));
    row.append(thumb, el("td", { class: "name", text: item.name }));
    if (r) {
      row.append(
        el("td", {}, el("span", { class: "label " + labelClass(r), text: r.label })),
        el("td", { class: "num", text: pct(r.positive_probability) }),
        el("td", { class: "num", text: r.threshold === null ? "–" : r.threshold.toFixed(3) }),
        el("td", { text: r.above_threshold === null ? "–" : r.above_threshold ? "yes" : "no" }),
        el("td", { text: [r.uncertain ? "uncertain" : "", r.ood_flag ? "out of distribution" : ""].filter(Boolean).join("; ") }),
      );
    } else {
      row.append(el("td", { colSpan: 5, class: item.error ? "error-text" : "muted", text: item.error || "waiting…" }));
    }
    if (r) {
      row.addEventListener("click", () => selectItem(item.id));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") selectItem(item.id); });
    }
    body.append(row);
  });
  $("csv-button").disabled = !state.items.some((i) => i.result || i.error);
}

function labelClass(r) {
  if (r.above_threshold === true || (r.above_threshold === null && r.class_index !== 0)) return "positive";
  return "negative";
}

// ------------------------------------------------------------------ one image in detail
async function selectItem(id) {
  const item = state.items.find((i) => i.id === id);
  if (!item || !item.result) return;
  state.selected = id;
  renderWorklist();
  $("detail").hidden = false;
  $("methods").replaceChildren();
  $("explain-progress").hidden = true;
  $("explain-button").disabled = false;
  renderDetail(item, item.detail || item.result);
  if (!item.detail) {
    $("detail-loading").hidden = false;
    const form = new FormData();
    form.append("file", item.file, item.name);
    try {
      item.detail = await api("/api/predict?original=true", { method: "POST", body: form });
      if (state.selected === id) renderDetail(item, item.detail);
    } catch (err) {
      addError(err.message);
    } finally {
      $("detail-loading").hidden = true;
    }
  }
}

function renderDetail(item, r) {
  $("detail-name").textContent = item.name;
  const label = $("detail-label");
  label.textContent = r.label;
  label.className = "label " + labelClass(r);
  $("detail-probability").textContent = pct(r.probability);
  const facts = $("detail-facts");
  facts.replaceChildren();
  const names = Object.keys(r.probabilities);
  fact(facts, "Probabilities", names.map((c) => `${c} ${pct(r.probabilities[c])}`).join(", "));
  if (r.threshold !== null) {
    fact(facts, "Threshold", `${r.threshold.toFixed(3)} on P(${r.positive_class}): ` +
      `${pct(r.positive_probability)} is ${r.above_threshold ? "above" : "below"} it` + (r.uncertain ? " (uncertain: close to the threshold)" : ""));
  } else if (r.uncertain) {
    fact(facts, "Uncertain", "the two most likely classes are close");
  }
  if (r.calibrated) {
    const raw = r.uncalibrated_probabilities[r.label];
    fact(facts, "Calibrated confidence", `${pct(r.probability)} (temperature ${r.temperature.toFixed(2)}; uncalibrated ${pct(raw)})`);
  } else {
    fact(facts, "Calibrated confidence", "not available: the model has no temperature");
  }
  fact(facts, "Image", `${r.width} × ${r.height} px`);
  const ood = $("detail-ood");
  ood.hidden = !r.ood_flag;
  ood.textContent = r.ood_flag ? "Out of distribution: " + r.ood_reason + ". Do not trust this prediction." : "";
  fact(facts, "OOD score", r.ood_score === null ? "not computed" : `${r.ood_score.toFixed(2)}${r.ood_flag ? " (flagged)" : " (like the training X-rays)"}`);
  const overlay = $("overlay-img");
  const original = $("original-img");
  if (r.overlay_png) {
    overlay.src = "data:image/png;base64," + r.overlay_png;
    overlay.hidden = false;
    $("overlay-caption").textContent = `Grad-CAM for ${r.explained_class}`;
  } else {
    overlay.removeAttribute("src");
    overlay.hidden = true;
  }
  if (r.original_png) {
    original.src = "data:image/png;base64," + r.original_png;
    original.hidden = false;
  } else {
    original.removeAttribute("src");
    original.hidden = true;
  }
}

// ------------------------------------------------------------------ explanation methods
async function explainSelected() {
  const item = state.items.find((i) => i.id === state.selected);
  if (!item) return;
  const button = $("explain-button");
  button.disabled = true;
  $("methods").replaceChildren();
  $("explain-progress").hidden = false;
  setExplainProgress(0, "starting…");
  const form = new FormData();
  form.append("file", item.file, item.name);
  let job;
  try {
    job = await api("/api/explain?overlay_size=768", { method: "POST", body: form });
  } catch (err) {
    setExplainProgress(0, "Could not start: " + err.message);
    button.disabled = false;
    return;
  }
  const id = item.id;
  while (state.selected === id) {
    renderMethods(job);
    if (job.status === "done" || job.status === "error") break;
    await new Promise((resolve) => setTimeout(resolve, 400));
    try {
      job = await api("/api/explain/" + encodeURIComponent(job.id));
    } catch (err) {
      setExplainProgress(0, "Lost the explanation job: " + err.message);
      break;
    }
  }
  button.disabled = false;
}

function setExplainProgress(value, text) {
  $("explain-bar").value = value;
  $("explain-text").textContent = text;
}

function renderMethods(job) {
  if (job.status === "error") {
    setExplainProgress(job.overall_progress, job.error);
  } else if (job.status === "done") {
    setExplainProgress(1, `done: ${job.methods.length} methods for ${job.explained_class}`);
  } else if (job.current) {
    const detail = job.current === "lime"
      ? `LIME: ${Math.round(100 * job.progress)} % of ${state.model ? state.model.lime_samples : ""} perturbed images`
      : methodTitle(job.current) + "…";
    setExplainProgress(job.overall_progress, detail);
  } else {
    setExplainProgress(job.overall_progress, "waiting for another explanation to finish…");
  }
  const grid = $("methods");
  for (const method of job.methods) {
    const r = job.results[method];
    if (!r || grid.querySelector(`[data-method="${CSS.escape(method)}"]`)) continue;
    grid.append(el("figure", { class: "method", "data-method": method },
      el("img", { src: "data:image/png;base64," + r.overlay_png, alt: r.title + " heatmap" }),
      el("figcaption", {},
        el("strong", { text: r.title }),
        el("span", { class: "score", text: `deletion ${r.deletion_auc.toFixed(3)} · insertion ${r.insertion_auc.toFixed(3)}` }),
        el("span", { class: "muted", text: `${r.seconds.toFixed(1)} s` }))));
  }
}

// ------------------------------------------------------------------ CSV
async function downloadCsv() {
  const results = sortedItems().map((i) => {
    if (i.result) {
      const { overlay_png, original_png, ...rest } = i.result;
      return rest;
    }
    return { name: i.name, error: i.error || "not processed" };
  });
  try {
    const response = await fetch("/api/csv", {
      method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify({ results }),
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const blob = await response.blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: "tfxai_predictions.csv" });
    link.id = "csv-link";
    document.body.append(link);
    link.click();
    setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 60000);
  } catch (err) {
    addError("CSV download failed: " + err.message);
  }
}

// ------------------------------------------------------------------ wiring
function setUp() {
  readToken();
  const zone = $("drop-zone");
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (e) => {
    e.preventDefault();
    zone.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("dragging")));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    const files = await droppedFiles(e.dataTransfer);
    handleFiles(files.list, files.fromFolder);
  });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file-input").click(); });
  $("file-input").addEventListener("change", (e) => { handleFiles(e.target.files, false); e.target.value = ""; });
  $("folder-input").addEventListener("change", (e) => { handleFiles(e.target.files, true); e.target.value = ""; });
  $("csv-button").addEventListener("click", downloadCsv);
  $("clear-button").addEventListener("click", () => {
    state.items = [];
    state.selected = null;
    $("errors").replaceChildren();
    $("detail").hidden = true;
    $("worklist-section").hidden = true;
    $("progress-box").hidden = true;
  });
  $("explain-button").addEventListener("click", explainSelected);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("tfxai-token", state.token);
    loadModel();
  });
  // Dropping a file anywhere else must not make the browser navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  loadModel();
}

// Files from a drop: plain files, or every file inside dropped folders.
async function droppedFiles(transfer) {
  const entries = Array.from(transfer.items || []).map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (!entries.some((e) => e && e.isDirectory)) return { list: Array.from(transfer.files), fromFolder: false };
  const list = [];
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      list.push(new File([file], prefix + file.name, { type: file.type }));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      let batch;
      do {
        batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        for (const child of batch) await walk(child, prefix + entry.name + "/");
      } while (batch.length);
    }
  }
  for (const entry of entries) if (entry) await walk(entry, "");
  return { list, fromFolder: true };
}

document.addEventListener("DOMContentLoaded", setUp);
