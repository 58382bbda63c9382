// DICOM in the browser, as tfxai.data.decode reads it (pydicom): uncompressed little-endian files
// only (implicit or explicit VR); the first frame; rescale slope/intercept, then the window
// (centre/width, LINEAR, LINEAR_EXACT or SIGMOID) when there is one; then tfxai's to_uint8 (the
// 0.5-99.5 percentile range stretched to 0-255); MONOCHROME1 inverted. Compressed transfer syntaxes,
// LUT sequences and big-endian files are refused with a message saying so.
"use strict";

const IMPLICIT_LE = "1.2.840.10008.1.2", EXPLICIT_LE = "1.2.840.10008.1.2.1";
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const TAGS = {
  0x00020010: "TransferSyntaxUID", 0x00280002: "SamplesPerPixel", 0x00280004: "PhotometricInterpretation",
  0x00280006: "PlanarConfiguration", 0x00280008: "NumberOfFrames", 0x00280010: "Rows", 0x00280011: "Columns",
  0x00280100: "BitsAllocated", 0x00280101: "BitsStored", 0x00280103: "PixelRepresentation",
  0x00281050: "WindowCenter", 0x00281051: "WindowWidth", 0x00281052: "RescaleIntercept",
  0x00281053: "RescaleSlope", 0x00281056: "VOILUTFunction", 0x00283000: "ModalityLUTSequence",
  0x00283010: "VOILUTSequence", 0x7fe00010: "PixelData",
};
const US_TAGS = new Set(["SamplesPerPixel", "PlanarConfiguration", "Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation"]);

export function isDicom(name, head) {
  const lower = name.toLowerCase();
  return lower.endsWith(".dcm") || lower.endsWith(".dicom") ||
    (head.length >= 132 && head[128] === 0x44 && head[129] === 0x49 && head[130] === 0x43 && head[131] === 0x4d);
}

function text(bytes, start, length) {
  let s = "";
  for (let i = start; i < start + length; i++) s += String.fromCharCode(bytes[i]);
  return s.replace(/[\0 ]+$/, "").trim();
}

// Walk the top-level data set: {name: value} for the tags above (PixelData as {offset, length}).
function parse(bytes, name) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = bytes.length >= 132 && text(bytes, 128, 4) === "DICM" ? 132 : 0;
  const out = {};
  let explicit = true;  // the file meta group is always explicit VR little endian
  const fail = (why) => new Error(`${name}: not a readable DICOM file (${why})`);
  while (pos + 8 <= bytes.length) {
    const group = view.getUint16(pos, true), element = view.getUint16(pos + 2, true);
    const tag = ((group << 16) | element) >>> 0;
    if (group !== 0x0002 && out.TransferSyntaxUID === undefined) out.TransferSyntaxUID = IMPLICIT_LE;
    if (group !== 0x0002) explicit = out.TransferSyntaxUID !== IMPLICIT_LE;
    let vr = "", length, header;
    if (explicit && group !== 0xfffe) {
      vr = text(bytes, pos + 4, 2);
      if (LONG_VRS.has(vr)) { length = view.getUint32(pos + 8, true); header = 12; }
      else { length = view.getUint16(pos + 6, true); header = 8; }
    } else {
      length = view.getUint32(pos + 4, true); header = 8;
    }
    const start = pos + header;
    const key = TAGS[tag];
    if (key === "PixelData") {
      out.PixelData = length === 0xffffffff ? { encapsulated: true } : { offset: start, length };
      return out;
    }
    if (length === 0xffffffff) {  // a sequence of undefined length: skip to its delimiter
      if (key) out[key] = true;
      let depth = 0, p = start;
      for (; p + 8 <= bytes.length; p += 2) {
        const g = view.getUint16(p, true), e = view.getUint16(p + 2, true);
        if (g === 0xfffe && e === 0xe0dd) { if (depth === 0) break; depth--; }
      }
      pos = p + 8;
      continue;
    }
    if (start + length > bytes.length) throw fail(`element (${group.toString(16)},${element.toString(16)}) runs past the end`);
    if (key && key !== "ModalityLUTSequence" && key !== "VOILUTSequence") {
      if (US_TAGS.has(key)) out[key] = view.getUint16(start, true);
      else out[key] = text(bytes, start, length);
    } else if (key) {
      out[key] = true;
    }
    pos = start + length;
  }
  if (!out.Rows || !out.Columns) throw new Error(`${name}: DICOM file has no image (no Rows/Columns)`);
  throw new Error(`${name}: DICOM file has no pixel data`);
}

const number = (s) => parseFloat(String(s).split("\\")[0]);

function percentile(sorted, q) {
  const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

// tfxai.data.decode.to_uint8 for a non-uint8 array.
function toUint8(values) {
  const sorted = Float32Array.from(values).sort();
  let lo = percentile(sorted, 0.005), hi = percentile(sorted, 0.995);
  if (hi <= lo) { lo = sorted[0]; hi = sorted[sorted.length - 1]; }
  const out = new Uint8Array(values.length);
  if (hi <= lo) return out;
  for (let i = 0; i < values.length; i++) {
    out[i] = Math.floor(Math.min(1, Math.max(0, (Math.fround(values[i]) - lo) / (hi - lo))) * 255 + 0.5);
  }
  return out;
}

// DICOM bytes -> {grey: Uint8Array, width, height}.
export function decodeDicom(bytes, name) {
  const ds = parse(bytes, name);
  const syntax = ds.TransferSyntaxUID;
  if (syntax !== IMPLICIT_LE && syntax !== EXPLICIT_LE) {
    throw new Error(`${name}: DICOM transfer syntax ${syntax} (compressed or big-endian) cannot be read in the ` +
      `browser; only uncompressed little-endian files can: convert it, or use tfxai serve / tfxai predict`);
  }
  if (ds.PixelData.encapsulated) throw new Error(`${name}: not a readable DICOM file (encapsulated pixel data in an uncompressed transfer syntax)`);
  if (ds.ModalityLUTSequence || ds.VOILUTSequence) {
    throw new Error(`${name}: DICOM LUT sequences are not applied in the browser; use tfxai serve / tfxai predict`);
  }
  const rows = ds.Rows, cols = ds.Columns, spp = ds.SamplesPerPixel || 1, bits = ds.BitsAllocated || 8;
  const n = rows * cols;
  if (n * spp * (bits / 8) > ds.PixelData.length || ![8, 16].includes(bits)) {
    throw new Error(`${name}: not a readable DICOM file (${bits}-bit pixels, ${ds.PixelData.length} bytes for ${cols}x${rows})`);
  }
  if (spp !== 1 && !(spp === 3 && bits === 8 && !ds.PlanarConfiguration)) {
    throw new Error(`${name}: DICOM with ${spp} samples per pixel (planar or 16-bit colour) is not read in the browser`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + ds.PixelData.offset, n * spp * (bits / 8));
  const signed = ds.PixelRepresentation === 1;
  if (spp === 3) {  // RGB -> grey with OpenCV's weights, as tfxai does
    const grey = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      grey[i] = (view.getUint8(3 * i) * 4899 + view.getUint8(3 * i + 1) * 9617 + view.getUint8(3 * i + 2) * 1868 + 8192) >> 14;
    }
    return { grey, width: cols, height: rows };
  }
  let values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    values[i] = bits === 8 ? (signed ? view.getInt8(i) : view.getUint8(i))
      : (signed ? view.getInt16(2 * i, true) : view.getUint16(2 * i, true));
  }
  let changed = false;
  const slope = ds.RescaleSlope !== undefined ? number(ds.RescaleSlope) : null;
  const intercept = ds.RescaleIntercept !== undefined ? number(ds.RescaleIntercept) : null;
  if (slope !== null && intercept !== null) {
    for (let i = 0; i < n; i++) values[i] = values[i] * slope + intercept;
    changed = true;
  }
  if (ds.WindowCenter !== undefined && ds.WindowWidth !== undefined) {
    const stored = ds.BitsStored || bits;
    let yMin = signed ? -(2 ** (stored - 1)) : 0, yMax = signed ? 2 ** (stored - 1) - 1 : 2 ** stored - 1;
    if (slope !== null && intercept !== null) { yMin = yMin * slope + intercept; yMax = yMax * slope + intercept; }
    const range = yMax - yMin, fn = (ds.VOILUTFunction || "LINEAR").toUpperCase();
    let center = number(ds.WindowCenter), width = number(ds.WindowWidth);
    if (fn === "SIGMOID") {
      for (let i = 0; i < n; i++) values[i] = range / (1 + Math.exp(-4 * (values[i] - center) / width)) + yMin;
    } else {
      if (fn === "LINEAR") { center -= 0.5; width -= 1; }
      for (let i = 0; i < n; i++) {
        const v = values[i];
        values[i] = v <= center - width / 2 ? yMin : v > center + width / 2 ? yMax : ((v - center) / width + 0.5) * range + yMin;
      }
    }
    changed = true;
  }
  let grey;
  if (bits === 8 && !signed && !changed) grey = Uint8Array.from(values);
  else grey = toUint8(values);
  if (String(ds.PhotometricInterpretation || "").toUpperCase() === "MONOCHROME1") {
    for (let i = 0; i < n; i++) grey[i] = 255 - grey[i];
  }
  return { grey, width: cols, height: rows };
}
