// irep3d explorer: the page `irep3d explore MODEL` serves (see README: "The explorer").
//
// A plain ES module, no build step, no network beyond the explorer's own JSON API.
// three.js r187 (npm package "three" 0.187.0, MIT licence: three.LICENSE), vendored
// unmodified as three.module.js + three.core.js.
//
// The page holds no rules of its own: the walk form is built from GET /api/options
// (`walk`: every option's type, default, range, choices and help), the 3D view's values
// come from the presets (`presets`) and its sliders' ranges from the scene settings
// (`scene`); every value is checked by the server, whose one-line errors are shown as
// they come. Frames are the server's PNGs, in the clip's own colours.

import * as THREE from "./three.module.js";

// ------------------------------------------------------------------ small helpers

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};

/** A random id for this tab (crypto.getRandomValues works on plain http too). */
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const TAB = randomId();

class ApiError extends Error {
  constructor(message, option = null, status = 0) {
    super(message);
    this.option = option;
    this.status = status;
  }
}

/** Ask the explorer's API; JSON in and out. Every request names this tab. */
async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { "X-Irep3d-Tab": TAB };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (exc) {
    throw new ApiError(`the explorer does not answer (${exc.message}): is irep3d explore still running?`);
  }
  if (raw && response.ok) return response;
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new ApiError(
      data.error || `${response.status} ${response.statusText}`,
      data.option,
      response.status,
    );
  }
  return response.json();
}

// ------------------------------------------------------------------ errors

const errorBox = $("error");

function showError(exc) {
  const message = exc instanceof Error ? exc.message : String(exc);
  errorBox.textContent = message;
  errorBox.classList.add("shown");
  if (exc && exc.option) {
    // the field the server names: a walk option, or any form field by its name (seeds)
    const input = fieldsByName.get(exc.option)?.input || $("walk-form").elements.namedItem(exc.option);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }
}

function clearError() {
  errorBox.textContent = "";
  errorBox.classList.remove("shown");
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// ------------------------------------------------------------------ state

const state = {
  model: null,
  layers: [],
  options: null,
  walk: null, // the server's answer to POST /api/walk, plus `asked`: what the page sent
  status: null, // GET /api/walk/{id}
  channels: [0, 1, 2],
  grey: false,
  armed: 0, // the slot the next channel click fills: 0 R, 1 G, 2 B
  frame: 0,
  playing: true,
  t0: 0,
  walkRequest: 0, // counts walks asked for: a late answer to an older one is dropped
};

// Send to NDI, as the server last answered: sending?, requests asked (a late answer to an
// older one is dropped), the timer of the next status request.
const ndi = { sending: false, asked: 0, timer: 0 };

// ------------------------------------------------------------------ 1. model and layers

function showModel(model) {
  const info = $("model-info");
  info.replaceChildren();
  for (const [label, value] of [
    ["model", model.model],
    ["architecture", model.architecture],
    ["resolution", `${model.resolution} px`],
    ["device", model.device],
    ["out", model.out],
  ]) {
    info.append(el("div", {}, el("dt", { textContent: label }), el("dd", { textContent: value })));
  }
  document.title = `irep3d explorer: ${model.model}`;
}

function showLayers(layers) {
  const list = $("layer-list");
  list.replaceChildren();
  for (const layer of layers) {
    const row = el(
      "tr",
      { className: "layer", tabIndex: 0, title: `Solo ${layer.name}: walk it with the form's values` },
      el("td", { className: "mono", textContent: layer.name }),
      el("td", { className: "num", textContent: layer.channels }),
      el("td", { className: "num", textContent: `${layer.width}×${layer.height}` }),
    );
    row.dataset.testid = `layer-${layer.name}`;
    row.dataset.layer = layer.name;
    row.addEventListener("click", () => startWalk(layer.name));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        startWalk(layer.name);
      }
    });
    list.append(row);
  }
}

function markLayer(name) {
  for (const row of $("layer-list").children) row.classList.toggle("current", row.dataset.layer === name);
}

// ------------------------------------------------------------------ 3. the walk form

/** Options shown at once; every other option (and any the library adds) goes under "More". */
const MAIN_OPTIONS = new Set([
  "frames_per_seed",
  "loop",
  "fps",
  "psi",
  "norm",
  "gain_db",
  "translate",
  "rotate",
  "mix_seeds",
  "mix_layers",
  "loop_start",
]);

const fieldsByName = new Map(); // option name -> {option, input, initial}

function rangeText(option) {
  const { low, high } = option;
  if (low !== null && high !== null) return `${low} to ${high}`;
  if (low !== null) return `at least ${low}`;
  if (high !== null) return `at most ${high}`;
  return "";
}

function buildField(option) {
  const testid = option.flag.split("/")[0].replace(/^--/, "");
  const id = `opt-${option.name}`;
  const range = rangeText(option);
  const title = [option.help, `${option.flag}${range ? ` (${range})` : ""}`].join("\n");
  let input;
  if (option.type === "bool") {
    input = el("input", { type: "checkbox", checked: Boolean(option.default) });
  } else if (option.choices.length) {
    input = el("select");
    for (const choice of option.choices) {
      input.append(el("option", { value: choice, textContent: choice, selected: choice === option.default }));
    }
  } else {
    input = el("input", {
      type: "text",
      value: option.default === null ? "" : String(option.default),
      placeholder: option.default === null ? "default" : "",
      spellcheck: false,
    });
    if (option.type === "int" || option.type === "float") input.inputMode = "decimal";
  }
  input.id = id;
  input.name = option.name;
  input.title = title;
  input.dataset.testid = testid;
  const label = el(
    "label",
    { className: `field ${option.type === "bool" ? "check" : ""}`, htmlFor: id, title },
    el("span", { textContent: testid.replace(/-/g, " ") }),
    input,
  );
  const initial = option.type === "bool" ? input.checked : input.value;
  fieldsByName.set(option.name, { option, input, initial });
  return label;
}

function buildForm(options) {
  const main = $("walk-fields");
  const more = $("more-fields");
  for (const option of options.walk) (MAIN_OPTIONS.has(option.name) ? main : more).append(buildField(option));
  $("walk-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.walk) startWalk(state.walk.layer);
    else showError("choose a layer first (click one in the list)");
  });
}

/** The form's values that differ from the defaults, as the user typed them; numbers that
 * read as the option's type are sent as numbers (so a release file records them as numbers),
 * anything else as text, for the server to accept or refuse in the CLI's words. Absent
 * means the default, as on the command line. */
function formValues() {
  const values = {};
  for (const [name, { option, input, initial }] of fieldsByName) {
    if (option.type === "bool") {
      if (input.checked !== initial) values[name] = input.checked;
      continue;
    }
    const text = input.value.trim();
    if (text === "" || text === initial) continue;
    const number = Number(text);
    const reads =
      option.type === "int" ? Number.isInteger(number) : option.type === "float" && Number.isFinite(number);
    values[name] = reads ? number : text;
  }
  return values;
}

// ------------------------------------------------------------------ walks

let pollTimer = 0;
let heartbeat = 0;
let frames = null; // FrameStore of the current walk

/** Solo `layer`: walk it with the form's values (or `asked`, a walk asked for before). */
async function startWalk(layer, asked = null) {
  const request = ++state.walkRequest;
  clearError();
  asked = asked || { layer, seeds: $("seeds").value.trim(), options: formValues() };
  let walk;
  try {
    walk = await api("/api/walk", { method: "POST", body: asked });
  } catch (exc) {
    if (request === state.walkRequest) showError(exc);
    return;
  }
  if (request !== state.walkRequest) return; // a newer walk was asked for meanwhile
  walk.asked = asked;
  if (frames) frames.dispose();
  state.walk = walk;
  state.status = { done: 0, total: walk.frames, figures_final: false, finished: false };
  frames = new FrameStore(walk);
  if (state.channels.some((c) => c >= walk.channels)) {
    state.channels = walk.channels >= 3 ? [0, 1, 2] : [0, 0, 0];
    state.grey = state.grey || walk.channels < 3;
    $("grey").checked = state.grey;
  }
  state.frame = 0;
  state.t0 = performance.now();
  $("preview-hint").hidden = true;
  markLayer(layer);
  const canvas = $("preview");
  canvas.width = walk.width;
  canvas.height = walk.height;
  canvas.style.aspectRatio = `${walk.width} / ${walk.height}`;
  canvas.classList.toggle("pixels", walk.width < 256);
  canvas.dataset.walk = walk.walk;
  $("scrub").max = String(walk.frames - 1);
  buildGrid(walk);
  showChannels();
  showStatus();
  view3d.setClipSize(walk.width, walk.height);
  updateCommand();
  clearTimeout(pollTimer);
  poll();
  clearInterval(heartbeat);
  heartbeat = setInterval(keepAlive, 20000);
  // The server sends the tab's new walk already; this gives it the channels shown (and
  // starts it again if the server had dropped this tab).
  if (ndi.sending) sendNdi(true);
}

async function poll() {
  const walk = state.walk;
  if (!walk) return;
  try {
    const status = await api(`/api/walk/${walk.walk}`);
    if (walk !== state.walk) return;
    state.status = status;
    showStatus();
    if (!status.finished) pollTimer = setTimeout(poll, 250);
  } catch (exc) {
    if (walk === state.walk) showError(exc);
  }
}

/** The server drops a tab's walk after a minute without a request: a finished, fully
 * cached walk asks nothing, so say it is still wanted; and start it again if it went. */
async function keepAlive() {
  const walk = state.walk;
  if (!walk || document.hidden) return;
  try {
    await api(`/api/walk/${walk.walk}`);
  } catch (exc) {
    if (walk === state.walk && exc.status === 410) restoreWalk(); // gone: the server dropped it
  }
}

function restoreWalk() {
  const walk = state.walk;
  if (!walk || walk.restoring) return; // once per lost walk, however many requests noticed
  walk.restoring = true;
  startWalk(walk.layer, walk.asked);
}

function showStatus() {
  const { done, total, figures_final: final } = state.status;
  $("frames-done").textContent = `${done}/${total}`;
  $("figures-note").textContent = final ? "" : "(colours provisional until the walk's figures are in)";
}

// ------------------------------------------------------------------ 2. channels

function buildGrid(walk) {
  const grid = $("channel-grid");
  const cells = $("cells");
  const { columns, gap } = walk.sheet;
  const width = Math.max(grid.clientWidth - 2, 160);
  const tile = Math.max(16, Math.min(256, Math.floor((width - gap * (columns - 1)) / columns)));
  grid.style.setProperty("--tile", `${tile}px`);
  grid.style.setProperty("--gap", `${gap}px`);
  grid.style.setProperty("--columns", columns);
  grid.dataset.tile = tile;
  cells.replaceChildren();
  for (let index = 0; index < walk.channels; index++) {
    const cell = el("button", { type: "button", className: "cell", title: `channel ${index}` });
    cell.dataset.testid = `channel-${index}`;
    cell.dataset.channel = index;
    cell.append(el("span", { className: "index", textContent: index }), el("span", { className: "role" }));
    cell.addEventListener("click", () => pickChannel(index));
    cells.append(cell);
  }
  const sheet = $("sheet");
  sheet.removeAttribute("src");
  sheet.hidden = true;
  sheetState.frame = -1;
  sheetState.done = -1;
}

function pickChannel(index) {
  if (!state.walk) return;
  const slot = state.grey ? 0 : state.armed;
  state.channels[slot] = index;
  if (!state.grey) state.armed = (slot + 1) % 3;
  channelsChanged();
}

function channelsChanged() {
  clearError();
  showChannels();
  frames?.pump(shownChannels(), state.frame); // the current frame first
  updateCommand();
  if (ndi.sending) sendNdi(true); // what goes out follows the preview
}

/** The channels the preview shows: three, or one in grey. */
function shownChannels() {
  return state.grey ? [state.channels[0]] : [...state.channels];
}

function showChannels() {
  const roles = ["R", "G", "B"];
  ["r", "g", "b"].forEach((slot, i) => {
    const button = $(`slot-${slot}`);
    button.querySelector("b").textContent = state.walk ? state.channels[i] : "–";
    button.classList.toggle("armed", !state.grey && state.armed === i);
    button.disabled = state.grey && i > 0;
    button.setAttribute("aria-pressed", String(!state.grey && state.armed === i));
  });
  for (const cell of $("cells").children) {
    const index = Number(cell.dataset.channel);
    const role = state.grey
      ? index === state.channels[0]
        ? "grey"
        : ""
      : roles.filter((_, i) => state.channels[i] === index).join("");
    cell.querySelector(".role").textContent = role;
    cell.classList.toggle("picked", role !== "");
    cell.dataset.role = role;
  }
  if (clipName.dataset.auto !== "no" && state.walk) clipName.value = defaultName();
}

for (const [i, slot] of ["r", "g", "b"].entries()) {
  $(`slot-${slot}`).addEventListener("click", () => {
    state.armed = i;
    showChannels();
  });
}

$("grey").addEventListener("change", (event) => {
  state.grey = event.target.checked;
  channelsChanged();
});

$("auto").addEventListener("click", async () => {
  const walk = state.walk;
  if (!walk) return showError("choose a layer first (click one in the list)");
  const button = $("auto");
  button.disabled = true;
  try {
    const { channels } = await api(`/api/walk/${walk.walk}/auto`, { method: "POST" });
    if (walk !== state.walk) return;
    state.channels = channels.length === 3 ? channels : [channels[0], channels[0], channels[0]];
    state.grey = channels.length === 1;
    $("grey").checked = state.grey;
    channelsChanged();
  } catch (exc) {
    showError(exc);
  } finally {
    button.disabled = false;
  }
});

// The live contact sheet: the current frame's channels, refreshed at a modest rate as
// frames come in and as the loop plays: one request at a time, at most every 400 ms, and
// less often when the server takes long to draw it (a layer of many large channels).
const sheetState = { frame: -1, done: -1, url: null, wait: 400 };

async function refreshSheet() {
  const walk = state.walk;
  const frame = state.frame;
  const done = state.status?.done;
  if (!walk || document.hidden || (frame === sheetState.frame && done === sheetState.done)) return;
  const started = performance.now();
  try {
    const tile = $("channel-grid").dataset.tile;
    const response = await api(`/api/walk/${walk.walk}/channels/${frame}.png?tile=${tile}`, { raw: true });
    const blob = await response.blob();
    if (walk !== state.walk) return;
    const sheet = $("sheet");
    const old = sheetState.url;
    sheetState.url = URL.createObjectURL(blob);
    sheet.src = sheetState.url;
    sheet.hidden = false;
    if (old) sheet.addEventListener("load", () => URL.revokeObjectURL(old), { once: true });
    sheetState.frame = frame;
    sheetState.done = done;
  } catch (exc) {
    if (exc.status !== 404 && walk === state.walk) showError(exc);
  } finally {
    sheetState.wait = Math.max(400, 4 * (performance.now() - started));
  }
}

async function sheetLoop() {
  await refreshSheet();
  setTimeout(sheetLoop, sheetState.wait);
}

sheetLoop();

// ------------------------------------------------------------------ 4. the loop

const MAX_REQUESTS = 4; // frame requests in flight at once
const DECODED_BYTES = 384 << 20; // decoded frames kept in the page (RGBA), all triples together

/** Decoded frames of one walk, per channel triple, the least recently used dropped past
 * DECODED_BYTES (a long, large loop then streams: the server keeps every frame). A frame
 * fetched before the walk was finished may be another (the server answers the nearest
 * computed one) or provisional (its colours before the walk's figures were in); it is
 * fetched again when that changes. */
class FrameStore {
  constructor(walk) {
    this.walk = walk;
    this.sets = new Map(); // "a,b,c" -> {images: [entry|null], pending: Set, retry: 0}
    this.used = new Map(); // entry -> its set, least recently used first
    this.capacity = Math.max(8, Math.floor(DECODED_BYTES / (walk.width * walk.height * 4)));
    this.inflight = 0;
  }

  set(channels) {
    const key = channels.join(",");
    let set = this.sets.get(key);
    if (!set) {
      set = { images: new Array(this.walk.frames).fill(null), pending: new Set(), retry: 0 };
      this.sets.set(key, set);
    }
    return set;
  }

  stale(entry, status) {
    if (!entry) return true;
    if (entry.final) return false;
    return (
      status.finished ||
      (status.figures_final && !entry.figuresFinal) ||
      (entry.shown !== entry.index && status.done > entry.stamp)
    );
  }

  /** Ask for the frames this triple still needs: `index` first, then onwards round the
   * loop (as far as the decoded frames kept reach), MAX_REQUESTS at a time. */
  pump(channels, index) {
    const set = this.set(channels);
    const status = state.status;
    if (performance.now() < set.retry) return;
    const total = this.walk.frames;
    const ahead = Math.min(total, Math.floor(this.capacity / 2));
    for (let step = 0; step < ahead && this.inflight < MAX_REQUESTS; step++) {
      const i = (index + step) % total;
      if (!set.pending.has(i) && this.stale(set.images[i], status)) this.fetch(channels, set, i, status);
    }
  }

  async fetch(channels, set, index, status) {
    set.pending.add(index);
    this.inflight++;
    try {
      const query = channels.join(",");
      const response = await api(`/api/walk/${this.walk.walk}/frame/${index}.png?channels=${query}`, {
        raw: true,
      });
      const shown = Number(response.headers.get("X-Irep3d-Frame") ?? index);
      const bitmap = await createImageBitmap(await response.blob());
      if (this.disposed) return bitmap.close();
      this.drop(set.images[index]);
      const entry = {
        bitmap,
        index,
        shown,
        stamp: status.done,
        figuresFinal: status.figures_final,
        final: status.finished && shown === index,
      };
      set.images[index] = entry;
      this.used.set(entry, set);
      for (const [oldest, its] of this.used) {
        if (this.used.size <= this.capacity) break;
        its.images[oldest.index] = null;
        this.drop(oldest);
      }
    } catch (exc) {
      set.retry = performance.now() + 200;
      if (exc.status === 404 || this.disposed) return; // nothing computed yet
      // 410: the walk was dropped (a quiet tab): keepAlive starts it again
      if (exc.status === 410) keepAlive();
      else showError(exc);
    } finally {
      set.pending.delete(index);
      this.inflight--;
    }
  }

  drop(entry) {
    if (!entry) return;
    this.used.delete(entry);
    entry.bitmap.close();
  }

  /** The decoded frame to show for `index`: its own, else the nearest one decoded. */
  image(channels, index) {
    const set = this.sets.get(channels.join(","));
    if (!set) return null;
    const total = this.walk.frames;
    for (let d = 0; d <= total / 2; d++) {
      const entry = set.images[(index + d) % total] || set.images[(index - d + total) % total];
      if (entry) {
        this.used.delete(entry); // just used: last to go
        this.used.set(entry, set);
        return entry;
      }
    }
    return null;
  }

  dispose() {
    this.disposed = true;
    for (const entry of this.used.keys()) entry.bitmap.close();
    this.used.clear();
    this.sets.clear();
  }
}

const preview = $("preview");
const previewContext = preview.getContext("2d");
let drawn = null;

function tick(now) {
  requestAnimationFrame(tick);
  const walk = state.walk;
  if (!walk || !frames) return;
  const total = walk.frames;
  if (state.playing) {
    const fps = walk.fps > 0 ? walk.fps : 30;
    state.frame = Math.floor(((now - state.t0) / 1000) * fps) % total;
  }
  const channels = shownChannels();
  frames.pump(channels, state.frame);
  const entry = frames.image(channels, state.frame);
  if (entry && entry !== drawn) {
    previewContext.drawImage(entry.bitmap, 0, 0);
    view3d.setFrame(entry.bitmap);
    drawn = entry;
    preview.dataset.frame = entry.shown;
    const label = `${String(state.frame + 1).padStart(String(total).length)}/${total}`;
    $("frame-label").textContent =
      entry.shown === state.frame ? label : `${label} (showing ${entry.shown + 1})`;
    if (!state.playing || $("scrub").matches(":not(:active)")) $("scrub").value = String(state.frame);
  }
}

function setPlaying(playing) {
  state.playing = playing;
  const fps = state.walk && state.walk.fps > 0 ? state.walk.fps : 30;
  if (playing) state.t0 = performance.now() - (state.frame / fps) * 1000;
  $("play").textContent = playing ? "Pause" : "Play";
}

$("play").addEventListener("click", () => setPlaying(!state.playing));
$("scrub").addEventListener("input", (event) => {
  setPlaying(false);
  state.frame = Number(event.target.value);
});
document.addEventListener("keydown", (event) => {
  if (event.key === " " && !event.target.closest("input, select, textarea, button")) {
    event.preventDefault();
    setPlaying(!state.playing);
  }
});

// ------------------------------------------------------------------ 5. the 3D view

const LUMINANCE = [0.2126, 0.7152, 0.0722]; // Rec. 709, as Blender's RGB to BW on linear values
const HEIGHT_WEIGHTS = { luminance: LUMINANCE, R: [1, 0, 0], G: [0, 1, 0], B: [0, 0, 1] };
const PLANE_HEIGHT = 2; // metres, as the Blender scene's plane; its width follows the clip
const EDGES = {
  // where the light sits: along an edge of the plane (corner to corner, in half sizes)
  left: [
    [-1, -1],
    [-1, 1],
  ],
  right: [
    [1, -1],
    [1, 1],
  ],
  front: [
    [-1, -1],
    [1, -1],
  ],
  back: [
    [-1, 1],
    [1, 1],
  ],
  centre: [
    [-1, 0],
    [1, 0],
  ],
};

// The plane's height comes from the frame's colour (luminance or one channel, of the
// linear values, as the Blender scene reads the EXR), and its normals from the height's
// slope, so a grazing light shows the relief; the shadow pass displaces the same way.
const HEIGHT_GLSL = `
uniform vec3 irepWeights;
uniform vec2 irepTexel;
uniform vec2 irepSize;
varying float vIrepHeight;
float irepHeight(vec2 uv) { return dot(texture2D(displacementMap, uv).rgb, irepWeights); }
`;
const DISPLACE_GLSL = `
#ifdef USE_DISPLACEMENTMAP
  vIrepHeight = irepHeight(vDisplacementMapUv);
  transformed += normalize(objectNormal) * (vIrepHeight * displacementScale + displacementBias);
#endif
`;
const NORMAL_GLSL = `
#include <beginnormal_vertex>
#ifdef USE_DISPLACEMENTMAP
{
  vec2 du = vec2(irepTexel.x, 0.0);
  vec2 dv = vec2(0.0, irepTexel.y);
  float sx = (irepHeight(vDisplacementMapUv + du) - irepHeight(vDisplacementMapUv - du))
    * displacementScale / (2.0 * irepTexel.x * irepSize.x);
  float sy = (irepHeight(vDisplacementMapUv + dv) - irepHeight(vDisplacementMapUv - dv))
    * displacementScale / (2.0 * irepTexel.y * irepSize.y);
  objectNormal = normalize(vec3(-sx, -sy, 1.0));
}
#endif
`;
const RAMP_GLSL = `
uniform sampler2D irepRamp;
uniform float irepUseRamp;
varying float vIrepHeight;
`;

class View3D {
  constructor(canvas) {
    this.canvas = canvas;
    this.values = {};
    this.rendered = 0;
    try {
      this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
    } catch (exc) {
      $("view-3d-note").textContent = `No 3D view: this browser gives no WebGL (${exc.message}).`;
      return;
    }
    const renderer = this.renderer;
    renderer.shadowMap.enabled = true;
    renderer.shadowMap.type = THREE.PCFShadowMap;
    renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(30, 16 / 9, 0.01, 100);
    this.camera.up.set(0, 0, 1); // Z up, as in Blender

    this.source = el("canvas", { width: 1, height: 1 });
    this.texture = new THREE.CanvasTexture(this.source);
    this.texture.colorSpace = THREE.SRGBColorSpace; // PNG code values -> linear, as the EXR holds
    this.texture.wrapS = this.texture.wrapT = THREE.ClampToEdgeWrapping;
    this.ramp = new THREE.DataTexture(new Uint8Array(256 * 4), 256, 1);
    this.ramp.colorSpace = THREE.SRGBColorSpace;
    this.ramp.magFilter = this.ramp.minFilter = THREE.LinearFilter;
    this.uniforms = {
      irepWeights: { value: new THREE.Vector3(...LUMINANCE) },
      irepTexel: { value: new THREE.Vector2(1, 1) },
      irepSize: { value: new THREE.Vector2(PLANE_HEIGHT, PLANE_HEIGHT) },
      irepRamp: { value: this.ramp },
      irepUseRamp: { value: 0 },
    };
    const patch = (shader, surface) => {
      Object.assign(shader.uniforms, this.uniforms);
      shader.vertexShader = shader.vertexShader
        .replace(
          "#include <displacementmap_pars_vertex>",
          `#include <displacementmap_pars_vertex>\n${HEIGHT_GLSL}`,
        )
        .replace("#include <displacementmap_vertex>", DISPLACE_GLSL);
      if (surface) {
        shader.vertexShader = shader.vertexShader.replace("#include <beginnormal_vertex>", NORMAL_GLSL);
        shader.fragmentShader = shader.fragmentShader
          .replace("#include <common>", `#include <common>\n${RAMP_GLSL}`)
          .replace(
            "#include <map_fragment>",
            "#include <map_fragment>\nif (irepUseRamp > 0.5) diffuseColor.rgb *= " +
              "texture2D(irepRamp, vec2(clamp(vIrepHeight, 0.0, 1.0), 0.5)).rgb;",
          );
      }
    };
    this.material = new THREE.MeshStandardMaterial({ displacementMap: this.texture });
    this.material.shadowSide = THREE.DoubleSide;
    this.material.onBeforeCompile = (shader) => patch(shader, true);
    this.material.customProgramCacheKey = () => "irep3d-surface";
    const distance = new THREE.MeshDistanceMaterial();
    distance.onBeforeCompile = (shader) => patch(shader, false);
    distance.customProgramCacheKey = () => "irep3d-distance";
    const depth = new THREE.MeshDepthMaterial({ depthPacking: THREE.RGBADepthPacking });
    depth.onBeforeCompile = (shader) => patch(shader, false);
    depth.customProgramCacheKey = () => "irep3d-depth";

    this.mesh = new THREE.Mesh(new THREE.PlaneGeometry(PLANE_HEIGHT, PLANE_HEIGHT, 1, 1), this.material);
    this.mesh.castShadow = this.mesh.receiveShadow = true;
    this.mesh.customDistanceMaterial = distance;
    this.mesh.customDepthMaterial = depth;
    this.scene.add(this.mesh);

    this.point = new THREE.PointLight(0xffffff, 1, 0, 2);
    this.spot = new THREE.SpotLight(0xffffff, 1, 0, Math.PI / 3, 0.3, 2);
    for (const light of [this.point, this.spot]) {
      light.castShadow = true;
      light.shadow.mapSize.set(512, 512);
      light.shadow.bias = -0.0005;
      light.shadow.normalBias = 0.01;
      light.shadow.camera.near = 0.01;
      light.shadow.camera.far = 50;
      this.scene.add(light);
    }
    this.scene.add(this.spot.target);
    this.ambient = new THREE.AmbientLight(0xffffff, 0);
    this.scene.add(this.ambient);

    this.clip = [1, 1];
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  get ok() {
    return Boolean(this.renderer);
  }

  resize() {
    if (!this.ok) return;
    const [w, h] = this.values.resolution || [16, 9];
    const width = Math.max(this.canvas.clientWidth, 64);
    const height = Math.round((width * h) / w);
    this.canvas.style.height = `${height}px`;
    this.renderer.setSize(width, height, false);
    this.frameCamera();
    this.invalidate();
  }

  /** A new walk: the plane takes the clip's aspect ratio and about a vertex a pixel. */
  setClipSize(width, height) {
    if (!this.ok) return;
    this.clip = [width, height];
    const half = [(PLANE_HEIGHT * width) / height / 2, PLANE_HEIGHT / 2];
    this.mesh.geometry.dispose();
    this.mesh.geometry = new THREE.PlaneGeometry(
      half[0] * 2,
      half[1] * 2,
      Math.min(width, 192),
      Math.min(height, 192),
    );
    this.uniforms.irepTexel.value.set(1 / width, 1 / height);
    this.uniforms.irepSize.value.set(half[0] * 2, half[1] * 2);
    this.source.width = width;
    this.source.height = height;
    this.texture.dispose(); // a new size: a new texture on the GPU
    this.apply(this.values);
  }

  /** Show `bitmap` (the current frame) as the plane's height (and colour). */
  setFrame(bitmap) {
    if (!this.ok) return;
    this.source.getContext("2d").drawImage(bitmap, 0, 0);
    this.texture.needsUpdate = true;
    this.hasFrame = true;
    this.invalidate();
  }

  /** Take the scene values (a preset's, changed by the sliders). */
  apply(values) {
    this.values = values;
    if (!this.ok || !values.name) return;
    const v = values;
    const m = this.material;
    m.displacementScale = v.displacement_strength;
    m.displacementBias = -v.displacement_strength * v.midlevel;
    this.uniforms.irepWeights.value.set(...(HEIGHT_WEIGHTS[v.height_source] || LUMINANCE));
    m.roughness = v.roughness;
    m.metalness = v.metallic;
    const mode = v.colour_mode;
    const map = mode === "activation" ? this.texture : null;
    if (m.map !== map) {
      m.map = map;
      m.needsUpdate = true;
    }
    if (mode === "activation" || mode === "ramp") m.color.setRGB(1, 1, 1);
    else m.color.setRGB(...v.base_colour);
    this.uniforms.irepUseRamp.value = mode === "ramp" ? 1 : 0;
    if (mode === "ramp") this.fillRamp(v.ramp);

    const [hx, hy] = [(PLANE_HEIGHT * this.clip[0]) / this.clip[1] / 2, PLANE_HEIGHT / 2];
    const [[x0, y0], [x1, y1]] = EDGES[v.light_edge] || EDGES.left;
    const t = v.light_position;
    const position = new THREE.Vector3((x0 + (x1 - x0) * t) * hx, (y0 + (y1 - y0) * t) * hy, v.light_height);
    // A point light's watts as Blender spreads them (W / 4π a steradian); an area light
    // (a disc) as a downward spot of its lambertian intensity (W / π).
    const area = v.light_type === "AREA";
    const spotLike = v.light_type === "SPOT" || area;
    this.point.visible = !spotLike;
    this.spot.visible = spotLike;
    const light = spotLike ? this.spot : this.point;
    light.position.copy(position);
    light.color.setRGB(...v.light_colour);
    light.intensity = v.light_energy / (area ? Math.PI : 4 * Math.PI);
    light.shadow.radius = Math.max(1, v.light_radius * 100);
    if (spotLike) {
      this.spot.angle = area ? Math.PI / 2 : Math.min(Math.PI / 2, (v.light_spot_angle * Math.PI) / 360);
      this.spot.penumbra = area ? 1 : 0.3;
      const aim = v.light_edge === "centre" || area ? [position.x, position.y, 0] : [0, 0, 0];
      this.spot.target.position.set(...aim);
      this.spot.target.updateMatrixWorld();
    }
    const world = v.world_colour.map((c) => c * v.world_strength);
    this.scene.background = new THREE.Color().setRGB(...world);
    this.ambient.color.setRGB(...v.world_colour);
    this.ambient.intensity = Math.PI * v.world_strength; // a uniform sky of that radiance
    this.renderer.toneMapping = v.view_transform === "Standard" ? THREE.NoToneMapping : THREE.AgXToneMapping;
    this.renderer.toneMappingExposure = 2 ** v.exposure;
    this.resize();
  }

  fillRamp(stops) {
    const data = this.ramp.image.data;
    for (let i = 0; i < 256; i++) {
      const x = i / 255;
      let k = 0;
      while (k < stops.length - 1 && stops[k + 1][0] < x) k++;
      const [p0, c0] = stops[k];
      const [p1, c1] = stops[Math.min(k + 1, stops.length - 1)];
      const f = p1 > p0 ? Math.min(Math.max((x - p0) / (p1 - p0), 0), 1) : 0;
      for (let c = 0; c < 3; c++) {
        const linear = c0[c] + (c1[c] - c0[c]) * f;
        const code = linear <= 0.0031308 ? 12.92 * linear : 1.055 * linear ** (1 / 2.4) - 0.055;
        data[i * 4 + c] = Math.round(Math.min(Math.max(code, 0), 1) * 255);
      }
      data[i * 4 + 3] = 255;
    }
    this.ramp.needsUpdate = true;
  }

  /** Frame the plane as the Blender scene's camera does: elevation and azimuth around
   * it, the lens on a 36 mm sensor, the corners at both displacement extremes in view. */
  frameCamera() {
    const v = this.values;
    if (!this.ok || !v.name) return;
    const [w, h] = v.resolution;
    let tanX = 18 / v.camera_lens;
    if (h > w) tanX *= w / h;
    const tanY = (tanX * h) / w;
    const elevation = (Math.min(v.camera_elevation, 89.9) * Math.PI) / 180;
    const azimuth = (v.camera_azimuth * Math.PI) / 180;
    const back = new THREE.Vector3(
      Math.sin(azimuth) * Math.cos(elevation),
      -Math.cos(azimuth) * Math.cos(elevation),
      Math.sin(elevation),
    );
    const right = new THREE.Vector3(0, 0, 1).cross(back).normalize();
    const up = back.clone().cross(right);
    const [hx, hy] = [(PLANE_HEIGHT * this.clip[0]) / this.clip[1] / 2, PLANE_HEIGHT / 2];
    const top = v.displacement_strength * (1 - v.midlevel);
    const bottom = -v.displacement_strength * v.midlevel;
    const corners = [];
    for (const sx of [-1, 1])
      for (const sy of [-1, 1])
        for (const z of [top, bottom])
          corners.push(new THREE.Vector3(sx * hx, sy * hy, z).multiplyScalar(v.camera_margin));
    const offsets = [];
    let distance = 0;
    for (const [axis, tan] of [
      [right, tanX],
      [up, tanY],
    ]) {
      const high = Math.max(...corners.map((p) => p.dot(axis) + tan * p.dot(back)));
      const low = Math.min(...corners.map((p) => p.dot(axis) - tan * p.dot(back)));
      offsets.push((high + low) / 2);
      distance = Math.max(distance, (high - low) / (2 * tan));
    }
    const camera = this.camera;
    camera.fov = (2 * Math.atan(tanY) * 180) / Math.PI;
    camera.aspect = w / h;
    camera.near = Math.max(0.01, distance / 1000);
    camera.far = distance * 10;
    camera.position
      .copy(back)
      .multiplyScalar(distance)
      .addScaledVector(right, offsets[0])
      .addScaledVector(up, offsets[1]);
    camera.lookAt(camera.position.clone().sub(back));
    camera.updateProjectionMatrix();
  }

  invalidate() {
    if (!this.ok || this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      if (!this.values.name) return;
      this.renderer.render(this.scene, this.camera);
      if (this.hasFrame) this.canvas.dataset.rendered = String(++this.rendered);
    });
  }
}

const view3d = new View3D($("view-3d"));

/** The 3D view's controls: a preset to start from, then sliders for the values an artist
 * tunes first. Labels, units, help and ranges are the scene settings' (`scene`). */
const SLIDERS = ["displacement_strength", "midlevel", "light_position", "light_height", "light_energy"];
const ELEVATION = { name: "camera_elevation", label: "Camera elevation", unit: "°", low: 0, high: 90 };
const sliderInputs = new Map();

function buildScene(options) {
  const select = $("preset");
  for (const preset of options.presets) {
    select.append(el("option", { value: preset.name, textContent: preset.name, title: preset.description }));
  }
  const box = $("scene-sliders");
  const settings = new Map(options.scene.map((s) => [s.name, s]));
  const height = settings.get("height_source");
  if (height) {
    const choice = el("select", { id: "scene-height_source", title: height.help });
    for (const c of height.choices)
      choice.append(el("option", { value: c.value, textContent: c.label, title: c.help }));
    choice.addEventListener("change", () => sceneChanged());
    sliderInputs.set("height_source", choice);
    box.append(
      el(
        "label",
        { className: "slider", title: height.help },
        el("span", { textContent: height.label }),
        choice,
      ),
    );
  }
  const specs = SLIDERS.map((name) => settings.get(name)).filter(Boolean);
  for (const s of [...specs, ELEVATION]) {
    const low = s.soft_low ?? s.low ?? 0;
    const high = s.soft_high ?? s.high ?? 1;
    const input = el("input", { type: "range", min: low, max: high, step: "any" });
    input.id = `scene-${s.name}`;
    input.dataset.testid = `scene-${s.name}`;
    const value = el("output", { className: "mono" });
    input.addEventListener("input", () => sceneChanged());
    sliderInputs.set(s.name, input);
    const label = el(
      "label",
      { className: "slider", title: s.help || "" },
      el("span", { textContent: s.label }),
      input,
      value,
    );
    label.dataset.unit = !s.unit || s.unit === "°" ? s.unit || "" : ` ${s.unit}`;
    box.append(label);
  }
  select.addEventListener("change", () => usePreset(select.value));
  select.value = defaultPreset(options);
  usePreset(select.value);
}

/** The default preset: the one whose values are the scene settings' defaults. */
function defaultPreset(options) {
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  const match = options.presets.find((p) => options.scene.every((s) => same(p.values[s.name], s.default)));
  return (match || options.presets[0]).name;
}

function usePreset(name) {
  const preset = state.options.presets.find((p) => p.name === name);
  if (!preset) return;
  $("view-3d-note").textContent = preset.description;
  for (const [key, input] of sliderInputs) {
    const value = preset.values[key];
    if (input.type === "range") {
      // a value past a slider's soft range widens it: the preset is kept as it is
      if (value < Number(input.min)) input.min = value;
      if (value > Number(input.max)) input.max = value;
    }
    input.value = value;
  }
  sceneChanged();
}

function sceneChanged() {
  const preset = state.options.presets.find((p) => p.name === $("preset").value);
  const values = { ...preset.values };
  for (const [key, input] of sliderInputs) {
    values[key] = input.type === "range" ? Number(input.value) : input.value;
    const out = input.parentElement.querySelector("output");
    const shown = Number(input.value)
      .toFixed(3)
      .replace(/\.?0+$/, "");
    if (out) out.textContent = `${shown}${input.parentElement.dataset.unit}`;
  }
  view3d.apply(values);
}

// ------------------------------------------------------------------ 6. act on it

const clipName = $("clip-name");
clipName.addEventListener("input", () => {
  clipName.dataset.auto = clipName.value.trim() ? "no" : "yes";
  updateCommand();
});

/** The name the server gives a clip without one (GET .../command without `name`). */
function defaultName() {
  return `${state.walk.layer}_c${shownChannels().join("-")}`;
}

function clipRequest() {
  return { channels: shownChannels(), name: clipName.value.trim() || defaultName() };
}

let commandTimer = 0;
let commandAsked = 0;

function updateCommand() {
  clearTimeout(commandTimer);
  commandTimer = setTimeout(async () => {
    const walk = state.walk;
    if (!walk) return;
    const asked = ++commandAsked;
    const { channels, name } = clipRequest();
    const query = new URLSearchParams({ channels: channels.join(","), name });
    try {
      const { command } = await api(`/api/walk/${walk.walk}/command?${query}`);
      if (asked === commandAsked) $("command").textContent = command;
    } catch (exc) {
      if (asked === commandAsked) {
        $("command").textContent = "";
        showError(exc);
      }
    }
  }, 120);
}

$("copy-command").addEventListener("click", async () => {
  const text = $("command").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("command"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
});

let job = null;

$("render-clip").addEventListener("click", async () => {
  const walk = state.walk;
  if (!walk) return showError("choose a layer first (click one in the list)");
  clearError();
  const button = $("render-clip");
  button.disabled = true;
  try {
    const { job: id } = await api(`/api/walk/${walk.walk}/render`, { method: "POST", body: clipRequest() });
    job = id;
    $("render-progress").hidden = false;
    $("render-progress").value = 0;
    $("render-cancel").hidden = false;
    $("render-status").textContent = "starting";
    followJob(id);
  } catch (exc) {
    showError(exc);
    button.disabled = false;
  }
});

async function followJob(id) {
  let status;
  try {
    status = await api(`/api/jobs/${id}`);
  } catch (exc) {
    showError(exc);
    return endJob();
  }
  if (id !== job) return;
  const progress = $("render-progress");
  progress.max = Math.max(status.total, 1);
  progress.value = status.done;
  if (status.state === "running") {
    $("render-status").textContent = `rendering ${status.done}/${status.total}`;
    setTimeout(() => followJob(id), 300);
    return;
  }
  if (status.state === "done") $("render-status").textContent = `done: ${status.path}`;
  else if (status.state === "cancelled") $("render-status").textContent = "cancelled";
  else {
    $("render-status").textContent = "failed";
    showError(status.error || "the render failed");
  }
  endJob();
}

function endJob() {
  job = null;
  $("render-clip").disabled = false;
  $("render-cancel").hidden = true;
  $("render-progress").hidden = true;
}

$("render-cancel").addEventListener("click", async () => {
  if (!job) return;
  try {
    await api(`/api/jobs/${job}/cancel`, { method: "POST" });
    $("render-status").textContent = "cancelling";
  } catch (exc) {
    showError(exc);
  }
});

$("add-to-release").addEventListener("click", async () => {
  const walk = state.walk;
  if (!walk) return showError("choose a layer first (click one in the list)");
  clearError();
  try {
    const body = { ...clipRequest(), release: $("release-file").value.trim() || "release.toml" };
    const { path, table } = await api(`/api/walk/${walk.walk}/release`, { method: "POST", body });
    $("release-path").textContent = `added to ${path}`;
    $("release-table").textContent = table;
    $("release-table").hidden = false;
  } catch (exc) {
    showError(exc);
  }
});

// ------------------------------------------------------------------ Send to NDI

// The tab's walk goes out as an NDI source, as the preview shows it (the server sends it
// with `irep3d live`'s code). The switch shows what the server answers, never a hope: the
// state it says after each request, and once a second while it sends (receivers, rate).
// (`ndi`, its state, is declared with `state` above.)

async function sendNdi(on) {
  const walk = state.walk;
  if (!walk) return showError("choose a layer first (click one in the list)");
  const asked = ++ndi.asked;
  const body = on
    ? { on: true, name: $("ndi-name").value.trim(), channels: shownChannels() }
    : { on: false };
  try {
    const answer = await api(`/api/walk/${walk.walk}/ndi`, { method: "POST", body });
    if (asked === ndi.asked && walk === state.walk) showNdi(answer);
  } catch (exc) {
    if (asked !== ndi.asked) return;
    showError(exc);
    if (exc.status === 410) return keepAlive(); // the walk was dropped: it is walked again
    refreshNdi(); // what does it send now?
  }
}

async function refreshNdi() {
  const walk = state.walk;
  const asked = ndi.asked;
  if (!walk) return;
  try {
    const answer = await api(`/api/walk/${walk.walk}/ndi`);
    if (asked === ndi.asked && walk === state.walk) showNdi(answer);
  } catch (exc) {
    if (walk === state.walk && exc.status === 410) keepAlive();
  }
}

function showNdi(answer) {
  ndi.sending = Boolean(answer.sending);
  const button = $("send-ndi");
  button.setAttribute("aria-checked", String(ndi.sending));
  let text = "";
  if (ndi.sending) {
    const receivers = `${answer.receivers} receiver${answer.receivers === 1 ? "" : "s"}`;
    const rate = `${Math.round(answer.fps_out)}/${answer.fps} frames/s`;
    text = `sending as ${answer.source} · ${receivers} · ${rate}`;
    if (answer.dropped) text += ` · ${answer.dropped} dropped`;
  }
  $("ndi-status").textContent = text;
  const notice = $("ndi-notice");
  if (answer.notice) notice.textContent = answer.notice;
  notice.hidden = !ndi.sending;
  if (answer.error) showError(answer.error);
  clearTimeout(ndi.timer);
  if (ndi.sending) ndi.timer = setTimeout(refreshNdi, 1000);
}

$("send-ndi").addEventListener("click", () => {
  clearError();
  sendNdi(!ndi.sending);
});
$("ndi-name").addEventListener("change", () => {
  if (ndi.sending) sendNdi(true); // the source opens again under the new name
});

// ------------------------------------------------------------------ tabs

// A closed tab's computation is dropped at once; a tab restored from the back/forward
// cache starts its walk again.
addEventListener("pagehide", () => navigator.sendBeacon(`/api/tab/close?tab=${TAB}`));
addEventListener("pageshow", (event) => {
  if (event.persisted) restoreWalk();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) keepAlive();
});

// ------------------------------------------------------------------ start

async function main() {
  try {
    const [model, layers, options] = await Promise.all([
      api("/api/model"),
      api("/api/layers"),
      api("/api/options"),
    ]);
    state.model = model;
    state.layers = layers;
    state.options = options;
    showModel(model);
    showLayers(layers);
    buildForm(options);
    buildScene(options);
    showChannels();
    document.body.dataset.ready = "yes";
  } catch (exc) {
    showError(exc);
  }
  requestAnimationFrame(tick);
}

main();
