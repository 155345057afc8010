// numcnn explorer page: drawing, MNIST-like preprocessing to 784 values, and the drawing of the
// traces that POST /api/trace returns (feature maps, δ maps, kernel gradients, saliency).
"use strict";

const SIDE = 28;          // the model's pixel grid (MNIST)
const BOX = 20;           // MNIST fits each digit's bounding box into 20×20 ...
const PAD_LINE = 22;      // ... stroke width on the 280×280 pad, about an MNIST pen after scaling

const state = {
  pixels: null,           // Float32Array(784) in 0..1, the digit as sent
  target: null,           // null: follow the prediction
  trace: null,            // the last /api/trace answer
  model: null,            // /api/model
  inFlight: false,
  pending: false,
  traces: 0,              // answers rendered so far (tests wait on it)
  lastMs: null,
};
window.explorer = state;

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const padCtx = pad.getContext("2d", { willReadFrequently: true });

// ---- colours -----------------------------------------------------------------------------------

// Diverging, centred at 0 (ColorBrewer RdBu ends): blue < 0 < red, white at 0.
const NEG = [33, 102, 172], MID = [247, 247, 247], POS = [178, 24, 43];
function diverging(value, scale) {
  const t = scale > 0 ? Math.max(-1, Math.min(1, value / scale)) : 0;
  const end = t < 0 ? NEG : POS, a = Math.abs(t);
  return [0, 1, 2].map((i) => Math.round(MID[i] + (end[i] - MID[i]) * a));
}
// Sequential for maps that are never negative (after ReLU or max pooling): white 0 → ink.
const INK = [23, 37, 84];
function sequential(value, scale) {
  const t = scale > 0 ? Math.max(0, Math.min(1, value / scale)) : 0;
  return [0, 1, 2].map((i) => Math.round(255 + (INK[i] - 255) * t));
}
function grey(value) {           // the input as MNIST shows it: white digit on black
  const g = Math.round(255 * Math.max(0, Math.min(1, value)));
  return [g, g, g];
}

function flat(nested) { return Array.isArray(nested) ? nested.flat(Infinity) : [nested]; }
function maxAbs(values) { let m = 0; for (const v of values) m = Math.max(m, Math.abs(v)); return m; }
function minOf(values) { let m = Infinity; for (const v of values) m = Math.min(m, v); return m; }
function fmt(x) { return x === 0 ? "0" : Math.abs(x) >= 0.01 && Math.abs(x) < 1000 ? x.toFixed(3) : x.toExponential(1); }

// Paint an H×W grid of values into a canvas of H×W pixels (CSS scales it up, pixelated).
function paint(canvas, values, height, width, colour) {
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const image = ctx.createImageData(width, height);
  for (let i = 0; i < height * width; i++) {
    const [r, g, b] = colour(values[i]);
    image.data[4 * i] = r; image.data[4 * i + 1] = g; image.data[4 * i + 2] = b; image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// ---- drawing -----------------------------------------------------------------------------------

function clearPad() {
  padCtx.fillStyle = "#000";
  padCtx.fillRect(0, 0, pad.width, pad.height);
}
clearPad();

let drawing = false, last = null;
function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * pad.width / rect.width, (event.clientY - rect.top) * pad.height / rect.height];
}
pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true; last = padPoint(event);
  stroke(last, last);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const point = padPoint(event);
  stroke(last, point); last = point;
  padChanged();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => { if (drawing) { drawing = false; padChanged(); } });
}
function stroke(from, to) {
  padCtx.strokeStyle = "#fff"; padCtx.lineWidth = PAD_LINE; padCtx.lineCap = "round"; padCtx.lineJoin = "round";
  padCtx.beginPath(); padCtx.moveTo(from[0], from[1]); padCtx.lineTo(to[0], to[1]); padCtx.stroke();
}
$("clear").addEventListener("click", () => {
  clearPad(); state.pixels = null; state.trace = null; render();
});

function padChanged() {
  state.pixels = preprocess();
  if (state.pixels) requestTrace();
}

// MNIST's own preprocessing of a drawing: crop to the ink, scale the box to fit 20×20 keeping the
// aspect ratio (area averaging), then centre its centre of mass in the 28×28 field.
function preprocess() {
  const { width, height } = pad;
  const data = padCtx.getImageData(0, 0, width, height).data;
  let top = height, bottom = -1, left = width, right = -1;
  const ink = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = data[4 * (y * width + x)] / 255;
      ink[y * width + x] = v;
      if (v > 0.05) { top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x); }
    }
  }
  if (bottom < 0) return null;
  const boxW = right - left + 1, boxH = bottom - top + 1;
  const scale = BOX / Math.max(boxW, boxH);
  const outW = Math.max(1, Math.round(boxW * scale)), outH = Math.max(1, Math.round(boxH * scale));
  const small = new Float32Array(outW * outH);
  for (let oy = 0; oy < outH; oy++) {
    const y0 = top + Math.floor(oy / scale), y1 = Math.max(y0 + 1, top + Math.floor((oy + 1) / scale));
    for (let ox = 0; ox < outW; ox++) {
      const x0 = left + Math.floor(ox / scale), x1 = Math.max(x0 + 1, left + Math.floor((ox + 1) / scale));
      let sum = 0, count = 0;
      for (let y = y0; y < Math.min(y1, bottom + 1); y++) {
        for (let x = x0; x < Math.min(x1, right + 1); x++) { sum += ink[y * width + x]; count++; }
      }
      small[oy * outW + ox] = count ? sum / count : 0;
    }
  }
  let mass = 0, my = 0, mx = 0;
  for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) {
    const v = small[y * outW + x]; mass += v; my += v * y; mx += v * x;
  }
  const offY = Math.round(SIDE / 2 - (mass ? my / mass : outH / 2) - 0.5);
  const offX = Math.round(SIDE / 2 - (mass ? mx / mass : outW / 2) - 0.5);
  const pixels = new Float32Array(SIDE * SIDE);
  for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) {
    const ty = y + offY, tx = x + offX;
    if (ty >= 0 && ty < SIDE && tx >= 0 && tx < SIDE) pixels[ty * SIDE + tx] = Math.min(1, small[y * outW + x]);
  }
  return pixels;
}

// ---- the server --------------------------------------------------------------------------------

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// Latest wins: while a trace is on its way, further strokes only mark that another is due.
async function requestTrace() {
  if (!state.pixels) return;
  if (state.inFlight) { state.pending = true; return; }
  state.inFlight = true; state.pending = false;
  const started = performance.now();
  try {
    state.trace = await post("/api/trace", { pixels: Array.from(state.pixels), target: state.target });
    state.lastMs = performance.now() - started;
    render();
    state.traces += 1;
    document.body.dataset.traces = String(state.traces);
  } catch (error) {
    $("status").textContent = "error: " + error.message;
  } finally {
    state.inFlight = false;
    if (state.pending) requestTrace();
  }
}

async function loadModel() {
  const model = await (await fetch("/api/model")).json();
  state.model = model;
  const error = model.test_error == null ? "" : ` · MNIST test error ${(100 * model.test_error).toFixed(2)}%`;
  const source = model.bundled ? "bundled checkpoint" : model.checkpoint;
  $("model-info").textContent = `${model.name} (${source})${error} — ${model.description}`;
  $("lr").value = model.default_lr;
  const samples = await (await fetch("/api/samples")).json();
  const holder = $("samples");
  for (const sample of samples) {
    const canvas = document.createElement("canvas");
    canvas.title = `MNIST test image #${sample.index} (label ${sample.label})`;
    canvas.dataset.label = sample.label;
    paint(canvas, sample.pixels, SIDE, SIDE, grey);
    canvas.addEventListener("click", () => pickSample(sample, canvas));
    holder.appendChild(canvas);
  }
}

function pickSample(sample, canvas) {
  clearPad();
  padCtx.imageSmoothingEnabled = false;
  padCtx.drawImage(canvas, 0, 0, pad.width, pad.height);
  state.pixels = Float32Array.from(sample.pixels);
  requestTrace();
}

// ---- rendering ---------------------------------------------------------------------------------

function render() {
  const trace = state.trace;
  $("status").textContent = trace && state.lastMs != null ? `last trace ${state.lastMs.toFixed(0)} ms` : "ready";
  if (state.pixels) paint($("input"), state.pixels, SIDE, SIDE, grey);
  else paint($("input"), new Float32Array(SIDE * SIDE), SIDE, SIDE, grey);
  if (!trace) {
    $("prediction").textContent = "–"; $("loss").textContent = "–";
    $("probs").innerHTML = ""; $("layers").innerHTML = "";
    paint($("saliency"), new Float32Array(SIDE * SIDE), SIDE, SIDE, (v) => diverging(v, 1));
    for (const el of document.querySelectorAll(".target-digit")) el.textContent = "–";
    return;
  }
  $("prediction").textContent = trace.prediction;
  $("loss").textContent = trace.loss.toFixed(4);
  for (const el of document.querySelectorAll(".target-digit")) el.textContent = trace.target;
  $("target-source").textContent = state.target == null ? "(the prediction)" : "(chosen)";
  renderProbabilities(trace);
  const saliency = flat(trace.input_gradient);
  const scale = maxAbs(saliency);
  paint($("saliency"), saliency, SIDE, SIDE, (v) => diverging(v, scale));
  renderLayers(trace);
}

function renderProbabilities(trace) {
  const holder = $("probs");
  if (holder.children.length !== trace.probabilities.length) {
    holder.innerHTML = "";
    trace.probabilities.forEach((_, k) => {
      const row = document.createElement("button");
      row.type = "button"; row.className = "prob"; row.dataset.class = k;
      row.innerHTML = `<span class="digit">${k}</span><span class="bar"><i></i></span><span class="pct"></span>`;
      row.addEventListener("click", () => { state.target = k; requestTrace(); });
      holder.appendChild(row);
    });
  }
  trace.probabilities.forEach((p, k) => {
    const row = holder.children[k];
    row.querySelector(".bar i").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".pct").textContent = p >= 0.001 ? `${(100 * p).toFixed(1)}%` : p.toExponential(0);
    row.classList.toggle("predicted", k === trace.prediction);
    row.classList.toggle("target", k === trace.target);
  });
}

// A whole number of screen pixels per unit, so that maps are about 84 px wide, smaller when a layer
// has many maps (LeNet-5's 16 maps of C3 then fit one line).
function cssScale(width, channels) {
  const room = Math.min(84, Math.floor(1040 / Math.max(1, channels)) - 6);
  return Math.max(2, Math.floor(room / width));
}

function mapsRow(label, detail, values, shape, colour, rowKind, layerIndex) {
  const row = document.createElement("div");
  row.className = "row";
  row.innerHTML = `<div class="row-label"><b>${label}</b>${detail}</div>`;
  const maps = document.createElement("div");
  maps.className = "maps";
  if (shape.length === 3) {
    const [channels, height, width] = shape, size = height * width, scale = cssScale(width, channels);
    for (let c = 0; c < channels; c++) {
      const unit = document.createElement("div");
      unit.className = "unit";
      const canvas = document.createElement("canvas");
      canvas.className = `map ${rowKind}-map`;
      canvas.style.width = `${width * scale}px`; canvas.style.height = `${height * scale}px`;
      canvas.title = `${label}, map ${c}`;
      paint(canvas, values.slice(c * size, (c + 1) * size), height, width, colour);
      Object.assign(unit.dataset, { layer: layerIndex, channel: c });
      unit.appendChild(canvas);
      maps.appendChild(unit);
    }
  } else {
    const n = values.length;
    const canvas = document.createElement("canvas");
    canvas.className = `strip ${rowKind}-map`;
    canvas.style.width = `${Math.min(720, Math.max(160, n * 6))}px`;
    canvas.title = `${label}: ${n} units`;
    paint(canvas, values, 1, n, colour);
    maps.appendChild(canvas);
  }
  row.appendChild(maps);
  return row;
}

// Kernels (F, C, KH, KW) as one canvas: a column per output map, a row per input map, 1-px gutters.
function kernelGrid(values, shape, colour, pixelsPerCell) {
  const [filters, channels, kh, kw] = shape;
  const rows = channels, cols = filters;
  const canvas = document.createElement("canvas");
  const width = cols * (kw + 1) - 1, height = rows * (kh + 1) - 1;
  const grid = new Array(width * height).fill(null);
  for (let f = 0; f < filters; f++) for (let c = 0; c < channels; c++) {
    const row = c, col = f;
    for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++)
      grid[(row * (kh + 1) + y) * width + col * (kw + 1) + x] = values[((f * channels + c) * kh + y) * kw + x];
  }
  paint(canvas, grid, height, width, (v) => (v === null ? [221, 227, 234] : colour(v)));
  const scale = pixelsPerCell || Math.max(3, Math.min(8, Math.floor(480 / Math.max(width, 1))));
  canvas.style.width = `${width * scale}px`; canvas.style.height = `${height * scale}px`;
  canvas.className = "kernels grad-map";
  return canvas;
}

function shapeOf(nested) {
  const shape = [];
  for (let level = nested; Array.isArray(level); level = level[0]) shape.push(level.length);
  return shape;
}

function renderLayers(trace) {
  const holder = $("layers");
  holder.innerHTML = "";
  trace.layers.forEach((layer, index) => {
    const box = document.createElement("div");
    box.className = "layer";
    const norms = Object.entries(layer.param_grads ? layer.param_grad_norms : {})
      .map(([name, norm]) => `‖∂E/∂${name}‖ = ${fmt(norm)}`).join(" · ");
    box.innerHTML = `<div class="layer-head">${layer.name} <span class="kind">${layer.kind}</span>` +
      `<span class="shape">${layer.output_shape.join("×")}</span><span class="extra">${norms}</span></div>`;
    const activation = flat(layer.activation), delta = flat(layer.delta);
    const signed = minOf(activation) < 0, aScale = maxAbs(activation), dScale = maxAbs(delta);
    const aColour = signed ? (v) => diverging(v, aScale) : (v) => sequential(v, aScale);
    box.appendChild(mapsRow("output", `max |a| ${fmt(aScale)}`, activation, layer.output_shape, aColour, "activation", index));
    box.appendChild(mapsRow("δ = ∂E/∂output", `max |δ| ${fmt(dScale)}`, delta, layer.output_shape, (v) => diverging(v, dScale), "delta", index));
    const weightGrad = layer.param_grads && layer.param_grads.weight;
    if (weightGrad && shapeOf(weightGrad).length === 4) {
      const values = flat(weightGrad), scale = maxAbs(values);
      const row = document.createElement("div");
      row.className = "row";
      row.innerHTML = `<div class="row-label"><b>∂E/∂W</b>each kernel (columns: output maps, rows: input maps), max ${fmt(scale)}</div>`;
      const maps = document.createElement("div");
      maps.className = "maps";
      maps.appendChild(kernelGrid(values, shapeOf(weightGrad), (v) => diverging(v, scale)));
      row.appendChild(maps);
      box.appendChild(row);
    }
    holder.appendChild(box);
  });
}

// ---- hover: the window below and the receptive field on the input ------------------------------

function spatialShape(index) {
  if (index < 0) {
    const shape = state.model ? state.model.input_shape : [1, SIDE, SIDE];
    return shape;
  }
  return state.trace.layers[index].output_shape;
}

// Rows/columns of layer index−1's output (or the input) read by rows [r0, r1], cols [c0, c1] of layer index.
function windowBelow(index, rect) {
  const layer = state.trace.layers[index];
  const w = layer.window || { kernel: [1, 1], stride: [1, 1], padding: [0, 0], channels: "same" };
  const [kh, kw] = w.kernel, [sh, sw] = w.stride, [ph, pw] = w.padding;
  return {
    r0: rect.r0 * sh - ph, r1: rect.r1 * sh - ph + kh - 1,
    c0: rect.c0 * sw - pw, c1: rect.c1 * sw - pw + kw - 1, channels: w.channels,
  };
}

// Element-wise layers (ReLU) keep the layout; a layer without a window breaks the chain.
function hasSpatialLink(index) {
  const layer = state.trace.layers[index];
  if (layer.window) return true;
  const below = spatialShape(index - 1);
  return layer.output_shape.length === 3 && below.length === 3 &&
    below[1] === layer.output_shape[1] && below[2] === layer.output_shape[2];
}

function outline(unit, rect, height, width, self) {
  const canvas = unit.querySelector("canvas");
  const sx = canvas.clientWidth / width, sy = canvas.clientHeight / height;
  const r0 = Math.max(0, rect.r0), r1 = Math.min(height - 1, rect.r1);
  const c0 = Math.max(0, rect.c0), c1 = Math.min(width - 1, rect.c1);
  if (r1 < r0 || c1 < c0) return;
  const hl = document.createElement("div");
  hl.className = self ? "hl self" : "hl";
  Object.assign(hl.style, {
    left: `${c0 * sx + 1 - 2}px`, top: `${r0 * sy + 1 - 2}px`,
    width: `${(c1 - c0 + 1) * sx + 4}px`, height: `${(r1 - r0 + 1) * sy + 4}px`,
  });
  unit.appendChild(hl);
}

function clearHighlights() {
  for (const el of document.querySelectorAll(".hl")) el.remove();
  for (const id of ["input", "saliency"]) $(id).dataset.field = "";
}

function markField(rect) {
  // The receptive field, in model-input coordinates, outlined on the 28×28 views (input padding removed).
  const pad = state.model ? state.model.input_padding : 0;
  const field = { r0: rect.r0 - pad, r1: rect.r1 - pad, c0: rect.c0 - pad, c1: rect.c1 - pad };
  for (const id of ["input", "saliency"]) {
    outline($(id).parentElement, field, SIDE, SIDE, false);
    const clip = (v) => Math.max(0, Math.min(SIDE - 1, v));
    $(id).dataset.field = [field.r0, field.c0, field.r1, field.c1].map(clip).join(",");
  }
}

$("layers").addEventListener("mousemove", (event) => {
  const unit = event.target.closest && event.target.closest(".unit");
  clearHighlights();
  if (!unit || !state.trace) return;
  const index = Number(unit.dataset.layer), channel = Number(unit.dataset.channel);
  const [, height, width] = state.trace.layers[index].output_shape;
  const canvas = unit.querySelector("canvas"), bounds = canvas.getBoundingClientRect();
  const y = Math.min(height - 1, Math.floor((event.clientY - bounds.top) / bounds.height * height));
  const x = Math.min(width - 1, Math.floor((event.clientX - bounds.left) / bounds.width * width));
  let rect = { r0: y, r1: y, c0: x, c1: x };
  for (const same of document.querySelectorAll(`.unit[data-layer="${index}"][data-channel="${channel}"]`)) {
    outline(same, rect, height, width, true);
  }
  // Walk down to the input: the first step outlines the window in the layer below.
  let first = true;
  for (let i = index; i >= 0; i--) {
    if (!hasSpatialLink(i)) return;
    const below = windowBelow(i, rect);
    if (first && i > 0) {
      const [, bh, bw] = spatialShape(i - 1);
      const selector = below.channels === "all" ? `.unit[data-layer="${i - 1}"]` : `.unit[data-layer="${i - 1}"][data-channel="${channel}"]`;
      for (const target of document.querySelectorAll(selector)) outline(target, below, bh, bw, false);
    }
    first = false;
    rect = below;
  }
  markField(rect);
});
$("layers").addEventListener("mouseleave", clearHighlights);

// ---- target and SGD step -----------------------------------------------------------------------

$("follow").addEventListener("click", () => { state.target = null; requestTrace(); });

$("step").addEventListener("click", async () => {
  if (!state.pixels || !state.trace) { $("step-result").textContent = "Draw or pick a digit first."; return; }
  const lr = Number($("lr").value);
  try {
    const answer = await post("/api/step", { pixels: Array.from(state.pixels), target: state.trace.target, lr });
    $("step-result").innerHTML =
      `η = ${answer.lr}, target ${answer.target}: loss <b>${answer.loss_before.toFixed(4)}</b> → <b>${answer.loss_after.toFixed(4)}</b>` +
      ` · prediction ${answer.prediction_before} → ${answer.prediction_after}` +
      ` · p(target) ${(100 * answer.probabilities_before[answer.target]).toFixed(1)}% → ${(100 * answer.probabilities_after[answer.target]).toFixed(1)}%` +
      `<br>(a copy of the model took the step; the served model is unchanged)`;
    renderStepKernels(answer.kernels);
  } catch (error) {
    $("step-result").textContent = "error: " + error.message;
  }
});

function renderStepKernels(kernels) {
  const holder = $("step-kernels");
  holder.innerHTML = "";
  if (!kernels) return;
  const before = flat(kernels.before), after = flat(kernels.after), change = flat(kernels.change);
  const shape = shapeOf(kernels.before);
  const scale = Math.max(maxAbs(before), maxAbs(after)), changeScale = maxAbs(change);
  for (const [title, values, s] of [["before", before, scale], ["after", after, scale], ["change (after − before)", change, changeScale]]) {
    const figure = document.createElement("figure");
    const grid = kernelGrid(values, shape, (v) => diverging(v, s), 9);
    figure.appendChild(grid);
    const caption = document.createElement("figcaption");
    caption.textContent = `layer ${kernels.layer} kernels, ${title}; max ${fmt(s)}`;
    figure.appendChild(caption);
    holder.appendChild(figure);
  }
}

loadModel().then(render).catch((error) => { $("model-info").textContent = "error: " + error.message; });
