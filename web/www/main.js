// The page around deepgen's engine (pkg/deepgen_web.js, built by web/build.sh). Every call
// into the engine that touches the GPU returns a promise and is awaited before the next
// (`queue` below serializes them): training chunks, sample grids and the explorer's decodes
// take turns on the one GPU context.
//
// window.app is the page's state and its handles for tests/browser.rs (WebDriver): ready,
// error, steps, losses, stepsPerSecond, gridRefreshes, decodes, trainTo(n), lastDecoded, ...
import init, { Engine } from "./pkg/deepgen_web.js";

const $ = (id) => document.getElementById(id);
const SIDE = 28;
const GRID = 8; // 8 x 8 prior samples
const CHUNK = 10; // training steps per engine call (their losses are read back once)
const SLIDERS = 6; // sliders for the most active latent dimensions
const PLANE = 10; // decodes per side of the 2-D plane

const app = {
  ready: false,
  error: null,
  engine: null,
  running: false,
  target: Infinity,
  steps: 0,
  losses: [], // {step, loss}: mean loss of each chunk
  trainSeconds: 0,
  stepsPerSecond: null,
  gridRefreshes: 0,
  decodes: 0,
  lastDecoded: null, // the explorer's image, 784 floats in [0, 1]
  lastGrid: null, // the sample grid's 64 images
  z: [], // the explorer's code
  dims: [], // the latent dimensions under the sliders, most active first
  kind: "-",
};
window.app = app;

function fail(e) {
  app.error = String(e && e.message ? e.message : e);
  $("error").textContent = app.error;
  console.error(e);
}

// One engine call at a time.
let tail = Promise.resolve();
function queue(f) {
  const run = tail.then(f);
  tail = run.catch(() => {});
  return run;
}

// Draws images (n * 784 floats in [0, 1]) into `canvas`, `cols` per row.
function drawImages(canvas, pixels, n, cols) {
  const rows = Math.ceil(n / cols);
  canvas.width = cols * SIDE;
  canvas.height = rows * SIDE;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < n; i++) {
    const ox = (i % cols) * SIDE, oy = Math.floor(i / cols) * SIDE;
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const v = Math.round(255 * pixels[i * SIDE * SIDE + y * SIDE + x]);
        const o = 4 * ((oy + y) * canvas.width + ox + x);
        img.data[o] = img.data[o + 1] = img.data[o + 2] = v;
        img.data[o + 3] = 255;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
}

function drawCurve() {
  const c = $("curve"), ctx = c.getContext("2d");
  const W = c.width, H = c.height, L = 52, R = 10, T = 10, B = 30;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = "#888";
  ctx.strokeRect(L, T, W - L - R, H - T - B);
  const pts = app.losses;
  if (pts.length === 0) return;
  const xmax = Math.max(pts[pts.length - 1].step, 1);
  let ymin = Infinity, ymax = -Infinity;
  for (const p of pts) { ymin = Math.min(ymin, p.loss); ymax = Math.max(ymax, p.loss); }
  if (ymax - ymin < 1e-6) { ymax += 1; ymin -= 1; }
  const X = (s) => L + (W - L - R) * s / xmax;
  const Y = (v) => T + (H - T - B) * (1 - (v - ymin) / (ymax - ymin));
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  ctx.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const v = ymin + (ymax - ymin) * i / 4;
    ctx.fillText(v.toFixed(0), L - 4, Y(v) + 4);
  }
  ctx.textAlign = "center";
  for (let i = 0; i <= 4; i++) {
    const s = xmax * i / 4;
    ctx.fillText(s.toFixed(0), X(s), H - B + 14);
  }
  ctx.fillText("training step", (L + W - R) / 2, H - 4);
  ctx.strokeStyle = "#c33";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  pts.forEach((p, i) => (i ? ctx.lineTo(X(p.step), Y(p.loss)) : ctx.moveTo(X(p.step), Y(p.loss))));
  ctx.stroke();
}

function showStats() {
  $("step").textContent = app.steps;
  const last = app.losses[app.losses.length - 1];
  $("loss").textContent = last ? last.loss.toFixed(1) : "-";
  $("sps").textContent = app.stepsPerSecond ? app.stepsPerSecond.toFixed(2) : "-";
  $("kind").textContent = app.kind;
}

async function refreshGrid() {
  const codes = app.engine.prior_codes(GRID * GRID, 0);
  const pixels = await queue(() => app.engine.decode(codes));
  app.lastGrid = pixels;
  drawImages($("grid"), pixels, GRID * GRID, GRID);
  app.gridRefreshes++;
}

// Decodes the explorer's code; a move made while a decode is in flight is decoded next.
let decoding = false, pending = false;
async function decodeExplorer() {
  if (decoding) { pending = true; return; }
  decoding = true;
  try {
    do {
      pending = false;
      const t0 = performance.now();
      const pixels = await queue(() => app.engine.decode(Float32Array.from(app.z)));
      app.lastDecoded = pixels;
      drawImages($("decoded"), pixels, 1, 1);
      app.decodes++;
      $("decode-ms").textContent = `decoded in ${(performance.now() - t0).toFixed(1)} ms`;
    } while (pending);
  } catch (e) {
    fail(e);
  } finally {
    decoding = false;
  }
}

// Sliders for the most active latent dimensions (largest KL over 256 images); for a 2-D
// latent space, a clickable plane of decodes as well.
async function buildExplorer() {
  const d = app.engine.latent_dim();
  const act = JSON.parse(await queue(() => app.engine.latent_activity()));
  app.z = new Array(d).fill(0);
  app.dims = [...act.kl.keys()].sort((a, b) => act.kl[b] - act.kl[a]).slice(0, Math.min(SLIDERS, d));
  const box = $("sliders");
  box.innerHTML = "";
  for (const j of app.dims) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: -3, max: 3, step: 0.01, value: 0 });
    input.dataset.dim = j;
    const value = document.createElement("span");
    value.textContent = "0.00";
    input.addEventListener("input", () => {
      app.z[j] = Number(input.value);
      value.textContent = app.z[j].toFixed(2);
      decodeExplorer();
    });
    label.append(`z[${j}] (KL ${act.kl[j].toFixed(2)})`, input, value);
    box.append(label);
  }
  const plane = $("plane");
  plane.style.display = d === 2 ? "" : "none";
  if (d === 2) {
    const codes = [];
    for (let r = 0; r < PLANE; r++)
      for (let c = 0; c < PLANE; c++)
        codes.push(-3 + 6 * (c + 0.5) / PLANE, 3 - 6 * (r + 0.5) / PLANE);
    const pixels = await queue(() => app.engine.decode(Float32Array.from(codes)));
    drawImages(plane, pixels, PLANE * PLANE, PLANE);
  }
  await decodeExplorer();
}

$("plane").addEventListener("click", (ev) => {
  const r = ev.target.getBoundingClientRect();
  app.z = [-3 + 6 * (ev.clientX - r.left) / r.width, 3 - 6 * (ev.clientY - r.top) / r.height];
  for (const input of $("sliders").querySelectorAll("input")) {
    input.value = app.z[Number(input.dataset.dim)];
    input.nextSibling.textContent = Number(input.value).toFixed(2);
  }
  decodeExplorer();
});

// Trains until stopped or until `app.target` steps, a chunk per engine call, refreshing the
// sample grid and the explorer every `every` steps.
async function trainLoop() {
  const every = Math.max(CHUNK, Number($("every").value) || 50);
  let lastRefresh = app.steps;
  while (app.running && app.steps < app.target) {
    const n = Math.min(CHUNK, app.target - app.steps);
    const t0 = performance.now();
    const loss = await queue(() => app.engine.train(n));
    app.trainSeconds += (performance.now() - t0) / 1000;
    app.steps += n;
    app.losses.push({ step: app.steps, loss });
    app.stepsPerSecond = app.steps / app.trainSeconds;
    drawCurve();
    showStats();
    if (app.steps - lastRefresh >= every || app.steps >= app.target) {
      lastRefresh = app.steps;
      await refreshGrid();
      await buildExplorer();
    }
    await new Promise((r) => setTimeout(r, 0)); // let the page paint and take input
  }
  app.running = false;
  $("train").textContent = "Train";
}

function setTraining(on) {
  if (on && !app.engine.trainable()) return fail("this model cannot be trained here (not a VAE, or no data)");
  app.running = on;
  $("train").textContent = on ? "Pause" : "Train";
  if (on) trainLoop().catch((e) => { app.running = false; fail(e); });
}

// Starts training and resolves once the model has taken `steps` steps in all (for the test).
app.trainTo = (steps) => {
  app.target = steps;
  if (!app.running) setTraining(true);
};

function resetStats(kind) {
  Object.assign(app, { steps: 0, losses: [], trainSeconds: 0, stepsPerSecond: null, kind });
  drawCurve();
  showStats();
}

async function newModel() {
  app.running = false;
  await tail;
  const d = Number($("model").value);
  app.engine.new_vae(d, 400, Number($("batch").value), Number($("lr").value), 0);
  resetStats(`vae (latent_dim ${d})`);
  await refreshGrid();
  await buildExplorer();
}

async function loadCheckpoint(bytes, name) {
  app.running = false;
  await tail;
  const kind = app.engine.load_checkpoint(bytes, name, Number($("batch").value), Number($("lr").value));
  resetStats(`${kind} from ${name}`);
  await refreshGrid();
  await buildExplorer();
}

// Loads a checkpoint from `url` (for the page's URL box and the test).
app.newModel = newModel;

app.loadUrl = async (url) => {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  await loadCheckpoint(new Uint8Array(await res.arrayBuffer()), url);
};

// One fixed training step from the checkpoint at `url` on the batch `x` with noise `eps`
// (for the cross-backend test): resolves with the JSON the engine returns.
app.fixedStep = async (url, x, eps) => {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  return await queue(() => app.engine.fixed_step(bytes, Float32Array.from(x), Float32Array.from(eps)));
};

$("train").addEventListener("click", () => setTraining(!app.running));
$("reset").addEventListener("click", () => newModel().catch(fail));
$("model").addEventListener("change", () => newModel().catch(fail));
$("file").addEventListener("change", async (ev) => {
  const f = ev.target.files[0];
  if (f) loadCheckpoint(new Uint8Array(await f.arrayBuffer()), f.name).catch(fail);
});
$("load-url").addEventListener("click", () => app.loadUrl($("url").value).catch(fail));

async function main() {
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is undefined)");
  await init();
  app.engine = await Engine.create();
  app.adapter = JSON.parse(app.engine.adapter_json());
  // Browsers often leave the adapter's name (wgpu's AdapterInfo.name) empty; WebGPU's own
  // GPUAdapterInfo still gives the vendor and the architecture.
  const info = (await navigator.gpu.requestAdapter())?.info;
  const described = info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") : "";
  app.adapter.browser_info = described;
  $("adapter").textContent = `WebGPU adapter: ${described || "(unnamed)"}; engine: ${app.engine.adapter()}, ` +
    `subgroups ${app.adapter.subgroups ? "yes" : "no"} (${app.adapter.subgroup_min_size}-${app.adapter.subgroup_max_size} lanes)`;
  const [images, labels] = await Promise.all(
    ["data/t10k-images-idx3-ubyte.gz", "data/t10k-labels-idx1-ubyte.gz"].map(async (u) => {
      const res = await fetch(u);
      if (!res.ok) throw new Error(`${u}: HTTP ${res.status}`);
      return new Uint8Array(await res.arrayBuffer());
    }));
  app.images = app.engine.load_mnist(images, labels, 0);
  await newModel();
  app.ready = true;
  const params = new URLSearchParams(location.search);
  if (params.has("train")) app.trainTo(Number(params.get("train")) || Infinity);
}

main().catch(fail);
