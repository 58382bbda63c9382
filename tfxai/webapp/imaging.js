// Pixels as tfxai prepares them, ported from Python: grey conversion (OpenCV COLOR_RGB2GRAY),
// the model's resize mode with OpenCV's INTER_AREA (tfxai.data.resize_image), the Grad-CAM map
// back onto the original (tfxai.data.heatmap_to_original), the jet overlay (tfxai.explain.figures)
// and the out-of-distribution guard (tfxai.ood). Plain functions on typed arrays; no DOM here.
"use strict";

export const RESIZE_MODES = ["pad", "squash", "crop"];

// Python's round() and OpenCV's cvRound: halves go to the even neighbour.
export function roundHalfEven(v) {
  const r = Math.round(v);
  return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

// RGBA bytes (canvas ImageData) -> grey bytes with OpenCV's fixed-point RGB2GRAY (14-bit weights
// 4899, 9617, 1868). A grey image decoded to R = G = B keeps its value exactly.
export function rgbaToGrey(rgba, width, height) {
  const n = width * height;
  const out = new Uint8Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    out[i] = (rgba[j] * 4899 + rgba[j + 1] * 9617 + rgba[j + 2] * 1868 + 8192) >> 14;
  }
  return out;
}

// OpenCV's computeResizeAreaTab: for each destination cell, the source cells it covers and their
// weights (float32, as OpenCV stores them). scale = 1 / (dst / src), computed as OpenCV does.
function areaTable(src, dst) {
  const scale = 1 / (dst / src);
  const di = [], si = [], alpha = [];
  for (let dx = 0; dx < dst; dx++) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cell = Math.min(scale, src - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, src - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) { di.push(dx); si.push(sx1 - 1); alpha.push(Math.fround((sx1 - fsx1) / cell)); }
    for (let sx = sx1; sx < sx2; sx++) { di.push(dx); si.push(sx); alpha.push(Math.fround(1 / cell)); }
    if (fsx2 - sx2 > 1e-3) {
      di.push(dx); si.push(sx2); alpha.push(Math.fround(Math.min(Math.min(fsx2 - sx2, 1), cell) / cell));
    }
  }
  return { di: Int32Array.from(di), si: Int32Array.from(si), alpha: Float32Array.from(alpha) };
}

// cv2.resize(INTER_AREA) of a whole-number shrink (OpenCV's resizeAreaFast): block means. OpenCV's
// SIMD kernel for 2x2 blocks rounds halves up, the generic one multiplies by 1/area in float.
function areaFast(src, sw, dst, dw, dh, kx, ky, sh) {
  const area = kx * ky, inv = Math.fround(1 / area);
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) {
      let sum = 0;
      for (let j = 0; j < ky; j++) {
        const row = (y * ky + j) * sw + x * kx;
        for (let i = 0; i < kx; i++) sum += src[row + i];
      }
      dst[y * dw + x] = (kx === 2 && ky === 2) ? (sum + 2) >> 2 : Math.min(255, roundHalfEven(Math.fround(sum * inv)));
    }
  }
}

// cv2.resize(INTER_AREA) enlarging on an axis: OpenCV's bilinear "area mode" taps, with its 11-bit
// fixed-point weights for 8-bit images (INTER_RESIZE_COEF_SCALE = 2048).
function areaLinearTaps(src, dst) {
  const inv = dst / src, scale = 1 / inv;
  const i0 = new Int32Array(dst), w0 = new Int32Array(dst), w1 = new Int32Array(dst);
  for (let d = 0; d < dst; d++) {
    let s = Math.floor(d * scale);
    let f = Math.fround((d + 1) - (s + 1) * inv);
    f = f <= 0 ? 0 : Math.fround(f - Math.floor(f));
    if (s < 0) { s = 0; f = 0; }
    if (s >= src - 1) { s = src - 1; f = 0; }
    i0[d] = s;
    w0[d] = roundHalfEven(Math.fround(1 - f) * 2048);
    w1[d] = roundHalfEven(f * 2048);
  }
  return { i0, w0, w1 };
}

// OpenCV's vertical step for 8-bit linear resizing (its SIMD kernel, used for rows of 16 and more).
const verticalFixed = (b0, s0, b1, s1) => (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;

function resizeAreaUp(src, w, h, dw, dh, dst) {
  const xs = areaLinearTaps(w, dw), ys = areaLinearTaps(h, dh);
  const row = (y) => {  // the horizontal pass of source row y: int32 values scaled by 2048
    const out = new Int32Array(dw), base = y * w;
    for (let x = 0; x < dw; x++) {
      const s = xs.i0[x];
      out[x] = s + 1 < w ? src[base + s] * xs.w0[x] + src[base + s + 1] * xs.w1[x] : src[base + s] * 2048;
    }
    return out;
  };
  for (let y = 0; y < dh; y++) {
    const s = ys.i0[y], r0 = row(s), r1 = s + 1 < h ? row(s + 1) : r0;
    const b0 = s + 1 < h ? ys.w0[y] : 2048, b1 = s + 1 < h ? ys.w1[y] : 0;
    for (let x = 0; x < dw; x++) dst[y * dw + x] = Math.max(0, Math.min(255, verticalFixed(b0, r0[x], b1, r1[x])));
  }
  return dst;
}

// Grey bytes (h, w) -> (dh, dw) exactly as cv2.resize(..., interpolation=cv2.INTER_AREA) on uint8:
// OpenCV's table and float32 arithmetic for a shrink, its fixed-point bilinear variant when an axis
// is enlarged (the same result to the bit on the films and sizes tests/test_web.py checks).
export function resizeArea(src, w, h, dw, dh) {
  const dst = new Uint8Array(dw * dh);
  if (w === dw && h === dh) { dst.set(src); return dst; }
  const scaleX = 1 / (dw / w), scaleY = 1 / (dh / h);
  if (scaleX >= 1 && scaleY >= 1) {
    const kx = Math.round(scaleX), ky = Math.round(scaleY);
    if (Math.abs(scaleX - kx) < Number.EPSILON && Math.abs(scaleY - ky) < Number.EPSILON) {
      areaFast(src, w, dst, dw, dh, kx, ky, h);
      return dst;
    }
    const xt = areaTable(w, dw), yt = areaTable(h, dh);
    const buf = new Float32Array(dw), sum = new Float32Array(dw);
    let prev = -1;
    const flush = (row) => { for (let x = 0; x < dw; x++) dst[row * dw + x] = Math.max(0, Math.min(255, roundHalfEven(sum[x]))); };
    for (let k = 0; k < yt.di.length; k++) {
      const dy = yt.di[k], sy = yt.si[k], beta = yt.alpha[k];
      buf.fill(0);
      const base = sy * w;
      for (let t = 0; t < xt.di.length; t++) {
        const d = xt.di[t];
        buf[d] = buf[d] + Math.fround(src[base + xt.si[t]] * xt.alpha[t]);
      }
      if (dy !== prev) {
        if (prev >= 0) flush(prev);
        for (let x = 0; x < dw; x++) sum[x] = Math.fround(beta * buf[x]);
        prev = dy;
      } else {
        for (let x = 0; x < dw; x++) sum[x] = sum[x] + Math.fround(beta * buf[x]);
      }
    }
    flush(prev);
    return dst;
  }
  return resizeAreaUp(src, w, h, dw, dh, dst);
}

function crop(src, w, top, left, ch, cw) {
  const out = new Uint8Array(ch * cw);
  for (let y = 0; y < ch; y++) out.set(src.subarray((top + y) * w + left, (top + y) * w + left + cw), y * cw);
  return out;
}

// tfxai.data.resize_image for one grey channel: {pixels: Uint8Array size*size, info} where info
// says where the content sits in the square (top, left, h, w), as tfxai's ResizeInfo.
export function resizeImage(grey, w0, h0, size, mode) {
  if (!RESIZE_MODES.includes(mode)) throw new Error(`resize mode must be one of ${RESIZE_MODES}, got ${mode}`);
  const info = { originalH: h0, originalW: w0, size, mode, top: 0, left: 0, h: size, w: size };
  if (mode === "squash" || h0 === w0) return { pixels: resizeArea(grey, w0, h0, size, size), info };
  if (mode === "pad") {
    const scale = size / Math.max(h0, w0);
    const h = Math.max(1, roundHalfEven(h0 * scale)), w = Math.max(1, roundHalfEven(w0 * scale));
    const small = resizeArea(grey, w0, h0, w, h);
    const out = new Uint8Array(size * size);
    const top = Math.floor((size - h) / 2), left = Math.floor((size - w) / 2);
    for (let y = 0; y < h; y++) out.set(small.subarray(y * w, (y + 1) * w), (top + y) * size + left);
    return { pixels: out, info: { ...info, top, left, h, w } };
  }
  const side = Math.min(h0, w0);
  const top0 = Math.floor((h0 - side) / 2), left0 = Math.floor((w0 - side) / 2);
  const pixels = resizeArea(crop(grey, w0, top0, left0, side, side), side, side, size, size);
  return { pixels, info: { ...info, top: -top0, left: -left0, h: side, w: side } };
}

// tfxai.data.display_size
export function displaySize(h, w, maxSide) {
  if (!maxSide || Math.max(h, w) <= maxSide) return [h, w];
  const s = maxSide / Math.max(h, w);
  return [Math.max(1, roundHalfEven(h * s)), Math.max(1, roundHalfEven(w * s))];
}

// One axis of cv2.resize(INTER_LINEAR) on floats: half-pixel centres, edges clamped.
function linearTaps(src, dst) {
  const i0 = new Int32Array(dst), i1 = new Int32Array(dst), f = new Float64Array(dst);
  for (let d = 0; d < dst; d++) {
    let x = (d + 0.5) * (src / dst) - 0.5, s = Math.floor(x);
    x -= s;
    if (s < 0) { s = 0; x = 0; }
    if (s >= src - 1) { s = src - 1; x = 0; }
    i0[d] = s; i1[d] = Math.min(s + 1, src - 1); f[d] = x;
  }
  return { i0, i1, f };
}

function resizeLinear(src, w, h, dw, dh) {
  const out = new Float32Array(dw * dh), xs = linearTaps(w, dw), ys = linearTaps(h, dh);
  for (let y = 0; y < dh; y++) {
    const r0 = ys.i0[y] * w, r1 = ys.i1[y] * w, fy = ys.f[y];
    for (let x = 0; x < dw; x++) {
      const c0 = xs.i0[x], c1 = xs.i1[x], fx = xs.f[x];
      const a = src[r0 + c0] * (1 - fx) + src[r0 + c1] * fx;
      const b = src[r1 + c0] * (1 - fx) + src[r1 + c1] * fx;
      out[y * dw + x] = a * (1 - fy) + b * fy;
    }
  }
  return out;
}

// tfxai.data.heatmap_to_original: the (size, size) map on the model input -> (dh, dw) over the
// original drawn at that size (padding undone; for crop, zeros outside the centre square).
export function heatmapToOriginal(heat, info, dh, dw) {
  const size = info.size;
  if (info.mode === "pad" && (info.h !== size || info.w !== size)) {
    const part = new Float32Array(info.h * info.w);
    for (let y = 0; y < info.h; y++) {
      for (let x = 0; x < info.w; x++) part[y * info.w + x] = heat[(info.top + y) * size + info.left + x];
    }
    return resizeLinear(part, info.w, info.h, dw, dh);
  }
  if (info.mode === "crop" && (info.originalH !== info.h || info.originalW !== info.w)) {
    const scale = dh / info.originalH;
    const side = Math.max(1, roundHalfEven(info.h * scale));
    const top = roundHalfEven(-info.top * scale), left = roundHalfEven(-info.left * scale);
    const part = resizeLinear(heat, size, size, side, side);
    const full = new Float32Array(dh * dw);
    for (let y = 0; y < Math.min(side, dh - top); y++) {
      for (let x = 0; x < Math.min(side, dw - left); x++) full[(top + y) * dw + left + x] = part[y * side + x];
    }
    return full;
  }
  return resizeLinear(heat, size, size, dw, dh);
}

// tfxai.explain.types.normalize_heatmap: min-max to [0, 1]; a constant map becomes zeros.
export function normalizeHeatmap(map) {
  let lo = Infinity, hi = -Infinity;
  for (const v of map) {
    const x = Number.isFinite(v) ? v : 0;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const span = hi - lo, out = new Float32Array(map.length);
  if (!(span > 1e-12)) return out;
  for (let i = 0; i < map.length; i++) out[i] = ((Number.isFinite(map[i]) ? map[i] : 0) - lo) / span;
  return out;
}

// matplotlib's "jet" (its segment data), as 256 RGB entries in [0, 1].
const JET = {
  r: [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]],
  g: [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]],
  b: [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]],
};
function segment(points, x) {
  for (let i = 1; i < points.length; i++) {
    if (x <= points[i][0]) {
      const [x0, y0] = points[i - 1], [x1, y1] = points[i];
      return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
    }
  }
  return points[points.length - 1][1];
}
const JET_LUT = Array.from({ length: 256 }, (_, i) => [segment(JET.r, i / 255), segment(JET.g, i / 255), segment(JET.b, i / 255)]);

// tfxai.explain.figures.overlay: (1 - alpha) * grey + alpha * jet(heat), as RGBA bytes.
export function overlayRGBA(grey, heat, n, alpha = 0.4) {
  const out = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    const c = JET_LUT[Math.min(255, Math.max(0, Math.floor(heat[i] * 256)))];
    const g = grey[i] / 255;
    for (let k = 0; k < 3; k++) out[i * 4 + k] = Math.floor(Math.min(1, Math.max(0, (1 - alpha) * g + alpha * c[k])) * 255);
    out[i * 4 + 3] = 255;
  }
  return out;
}

// ------------------------------------------------------------------ out-of-distribution guard
function std(pixels) {
  let s = 0, s2 = 0;
  for (const v of pixels) { s += v; s2 += v * v; }
  const m = s / pixels.length;
  return Math.sqrt(Math.max(0, s2 / pixels.length - m * m));
}

// One axis of an area resize on floats: ``lines`` runs of ``src`` values (``step`` apart, runs
// ``stride`` apart) -> runs of t values (transposed, so a second call does the other axis).
function areaPass(values, lines, src, t) {
  const table = areaTable(src, t), out = new Float64Array(lines * t);
  for (let line = 0; line < lines; line++) {
    for (let k = 0; k < table.di.length; k++) out[table.di[k] * lines + line] += values[line * src + table.si[k]] * table.alpha[k];
  }
  return out;
}

// tfxai.ood.thumbnails: the (size, size) grey input -> t x t (cv2.resize INTER_AREA on float32) / 255.
function thumbnail(pixels, size, t) {
  return areaPass(areaPass(pixels, size, size, t), t, size, t).map((v) => v / 255);
}

function mahalanobis(part, v) {
  let total = 0;
  for (let k = 0; k < part.components.length; k++) {
    const row = part.components[k];
    let z = 0;
    for (let d = 0; d < row.length; d++) z += (v[d] - part.mean[d]) * row[d];
    total += z * z / part.variances[k];
  }
  return Math.sqrt(total);
}

// tfxai.ood.guard_verdicts for one image: {score, pixelScore, flag, reason}. pixels: the model's
// grey input (size * size bytes); features: the penultimate features (or null); guard: ood.json.
export function checkOOD(guard, pixels, size, features) {
  const flatStd = guard ? guard.flat_std : 2.0;
  const score = guard && guard.features && features ? mahalanobis(guard.features, features) : NaN;
  const pixelScore = guard && guard.pixels ? mahalanobis(guard.pixels, thumbnail(pixels, size, guard.thumbnail)) : NaN;
  let reason = "";
  if (std(pixels) < flatStd) reason = "blank image (a single grey level), not an X-ray";
  else if (guard && score > guard.features.threshold) {
    reason = `unlike the training X-rays (distance ${score.toFixed(1)} > ${guard.features.threshold.toFixed(1)})`;
  } else if (guard && guard.pixels && pixelScore > guard.pixels.threshold) {
    reason = `its overall brightness layout is unlike the training X-rays' (distance ${pixelScore.toFixed(1)} > ` +
      `${guard.pixels.threshold.toFixed(1)}): inverted, rotated, cropped or not a chest X-ray?`;
  }
  return { score, pixelScore, flag: reason !== "", reason };
}
