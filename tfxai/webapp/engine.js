// The model in the browser: LiteRT.js (copied into runtime/, never from a CDN) runs model.tflite,
// whose outputs are the class scores, the raw Grad-CAM map of every class and the penultimate
// features. classify() turns one file into what the page shows; nothing leaves the device.
"use strict";

import { loadLiteRt, loadAndCompile, supportsFeature, Tensor } from "./runtime/litert/index.js";
import { decodeDicom, isDicom } from "./dicom.js";
import { checkOOD, displaySize, normalizeHeatmap, resizeArea, resizeImage, rgbaToGrey } from "./imaging.js";

export const MAX_PIXELS = 50_000_000;  // as tfxai's $TFXAI_MAX_PIXELS default
// The original is kept for display at most this large: a phone holding a worklist of full-size
// films would run out of memory, and its screen shows no more than about 1,100 px anyway.
export const MAX_DISPLAY_SIDE = 1280;

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return response.json();
}

export class Engine {
  // facts: model.json; guard: ood.json or null; card: model_card.json
  static async load() {
    const t0 = performance.now();
    const facts = await getJSON("model.json");
    const [guard, card] = await Promise.all([facts.ood ? getJSON(facts.ood) : null, getJSON(facts.model_card)]);
    const variant = (await supportsFeature("relaxedSimd")) ? "simd" : "compat";
    const t1 = performance.now();
    await loadLiteRt(facts.runtime.variants[variant]);
    const t2 = performance.now();
    const model = await loadAndCompile(facts.model_file, { accelerator: "wasm" });
    const t3 = performance.now();
    const engine = new Engine(facts, guard, card, model, variant);
    engine.timings = { factsMs: t1 - t0, runtimeMs: t2 - t1, modelMs: t3 - t2 };
    return engine;
  }

  constructor(facts, guard, card, model, variant) {
    Object.assign(this, { facts, guard, card, model, variant });
    this.size = facts.image_size;
    this.channels = facts.channels;
  }

  // Raw model outputs for one prepared input (Uint8Array size*size*channels): {scores, gradcam, features}.
  async run(pixels) {
    const input = new Float32Array(pixels.length);
    for (let i = 0; i < pixels.length; i++) input[i] = pixels[i];
    const tensor = new Tensor(input, [1, this.size, this.size, this.channels]);
    let outputs;
    try {
      outputs = await this.model.run({ image: tensor });
    } finally {
      tensor.delete();
    }
    const read = (name) => {
      if (!outputs[name]) return null;
      const values = Float32Array.from(outputs[name].toTypedArray());
      outputs[name].delete();
      return values;
    };
    return { scores: read("scores"), gradcam: read("gradcam"), features: read("features") };
  }

  // The decision as tfxai makes it: the threshold on the positive class for two classes, else argmax.
  decide(scores) {
    if (scores.length === 2) return scores[1] >= this.facts.threshold ? 1 : 0;
    let best = 0;
    for (let k = 1; k < scores.length; k++) if (scores[k] > scores[best]) best = k;
    return best;
  }

  // One file -> {name, label, index, scores, heatmap (normalised, on the model input), info, display
  // (the grey original at most MAX_DISPLAY_SIDE: {grey, width, height}), width, height, ood, ms}. Throws an Error whose message names the file when it cannot be read.
  async classify(file) {
    const t0 = performance.now();
    const image = await decodeFile(file);
    const t1 = performance.now();
    const grey = image.grey;
    const { pixels, info } = resizeImage(grey, image.width, image.height, this.size, this.facts.resize_mode);
    const input = this.channels === 1 ? pixels : repeat3(pixels);
    const t2 = performance.now();
    const out = await this.run(input);
    const t3 = performance.now();
    const index = this.decide(out.scores);
    const plane = this.size * this.size;
    const raw = out.gradcam.subarray(index * plane, (index + 1) * plane);
    const ood = checkOOD(this.guard, pixels, this.size, out.features);
    const [dh, dw] = displaySize(image.height, image.width, MAX_DISPLAY_SIDE);
    const display = { width: dw, height: dh, grey: dh === image.height ? grey : resizeArea(grey, image.width, image.height, dw, dh) };
    return {
      name: file.name, label: this.facts.class_names[index], index, scores: Array.from(out.scores),
      heatmap: normalizeHeatmap(raw), rawMap: raw, input, info, display, width: image.width, height: image.height,
      ood, ms: { decode: t1 - t0, preprocess: t2 - t1, model: t3 - t2, total: t3 - t0 }, note: image.note || "",
    };
  }
}

function repeat3(pixels) {
  const out = new Uint8Array(pixels.length * 3);
  for (let i = 0; i < pixels.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = pixels[i];
  return out;
}

function unreadable(name, why) {
  return new Error(`${name}: not a readable image (expected JPEG, PNG or uncompressed DICOM${why ? "; " + why : ""})`);
}

// A file -> {grey: Uint8Array, width, height, note}. Browsers decode JPEG and PNG (createImageBitmap,
// no colour management, EXIF orientation ignored as OpenCV's IMREAD_UNCHANGED does); DICOM is read
// by dicom.js. 16-bit PNGs are reduced to 8 bits by the browser (tfxai stretches them): noted.
export async function decodeFile(file) {
  const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
  if (file.size === 0) throw new Error(`${file.name}: file is empty (0 bytes)`);
  if (isDicom(file.name, head)) return decodeDicom(new Uint8Array(await file.arrayBuffer()), file.name);
  if (head[0] === 0xff && head[1] === 0xd8) {
    const tail = new Uint8Array(await file.slice(Math.max(0, file.size - 1024)).arrayBuffer());
    let end = false;
    for (let i = 0; i + 1 < tail.length && !end; i++) end = tail[i] === 0xff && tail[i + 1] === 0xd9;
    if (!end) throw new Error(`${file.name}: truncated JPEG (no end-of-image marker)`);
  }
  const note = head.length > 24 && head[0] === 0x89 && head[1] === 0x50 && head[24] === 16
    ? "16-bit PNG: the browser keeps the top 8 bits, tfxai stretches the range; results may differ" : "";
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "none" });
  } catch (err) {
    throw unreadable(file.name, err && err.name);
  }
  try {
    const { width, height } = bitmap;
    if (width * height > MAX_PIXELS) throw new Error(`${file.name}: image is ${width}x${height} pixels, over the limit of ${MAX_PIXELS.toLocaleString("en")} pixels`);
    if (Math.min(width, height) < 2) throw new Error(`${file.name}: image is ${width}x${height} pixels, too small`);
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    return { grey: rgbaToGrey(rgba, width, height), width, height, note };
  } finally {
    bitmap.close();
  }
}
