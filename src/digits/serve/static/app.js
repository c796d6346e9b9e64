// Draw-a-digit page: strokes on a canvas, sent as PNG to /api/predict as you draw.
// The server does all preprocessing (the same function as the API and the CLI), and
// returns the 28x28 image the model saw, which is shown beside the probabilities.
"use strict";

const LINE_WIDTH = 18;      // canvas pixels; a 200-pixel digit scales to MNIST's ~2-pixel strokes
const THROTTLE_MS = 120;    // at most one prediction request this often while drawing

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const output = document.getElementById("prediction");
const statusLine = document.getElementById("status");
const bars = document.getElementById("bars");
const verdictLine = document.getElementById("verdict");

const strokes = [];         // each stroke: [[x, y], ...] in canvas pixels, kept for undo
let current = null;         // the stroke being drawn
let lastSent = 0;
let timer = null;
// Request bookkeeping, also read by the end-to-end test: only the newest answer is shown.
const state = { sent: 0, shown: 0, pending: 0 };
window.digitsState = state;

function buildBars() {
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${d}</span><div class="bar"><span></span></div><span class="pct">–</span>`;
    bars.appendChild(li);
  }
}

function paint() {
  ctx.fillStyle = "#fff";   // opaque white paper: dark ink on light, as on a sheet
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = LINE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const stroke of strokes) drawStroke(stroke);
}

function drawStroke(points) {
  if (points.length === 1) {  // a tap leaves a dot
    ctx.beginPath();
    ctx.arc(points[0][0], points[0][1], LINE_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

function toCanvas(event) {
  // The canvas may be shown smaller than its 280x280 pixels (phones): scale back.
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  current = [toCanvas(event)];
  strokes.push(current);
  paint();
  schedule();
});

pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) current.push(toCanvas(e));
  paint();
  schedule();
});

function endStroke() {
  if (!current) return;
  current = null;
  predictNow();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function schedule() {
  const wait = THROTTLE_MS - (performance.now() - lastSent);
  if (wait <= 0) predictNow();
  else if (!timer) timer = setTimeout(predictNow, wait);
}

function predictNow() {
  clearTimeout(timer);
  timer = null;
  lastSent = performance.now();
  if (!strokes.length) { showEmpty(); return; }
  // Counted now, not when toBlob calls back, so that no one takes the old answer for the newest.
  const seq = ++state.sent;
  state.pending++;
  pad.toBlob((blob) => send(blob, "image/png", seq), "image/png");
}

async function send(body, contentType, seq) {
  if (seq === undefined) { seq = ++state.sent; state.pending++; }
  try {
    const init = { method: "POST", body };
    if (contentType) init.headers = { "Content-Type": contentType };
    const response = await fetch("/api/predict?include_image=true", init);
    const answer = await response.json();
    if (seq < state.shown) return;  // a newer answer is already on screen
    state.shown = seq;
    if (!response.ok) { showError(answer.detail || response.statusText); return; }
    showReading(answer);
  } catch (error) {
    if (seq >= state.shown) { state.shown = seq; showError(`no answer from the server (${error})`); }
  } finally {
    state.pending--;
  }
}

function showReading(answer) {
  statusLine.textContent = "";
  // answered: "4"; unsure: "4 or 9?"; not a digit: said so. The probabilities are calibrated.
  const verdict = answer.verdict || (answer.digit_found ? "answered" : "not a digit");
  output.classList.toggle("none", verdict === "not a digit");
  output.classList.toggle("unsure", verdict === "unsure");
  output.textContent = verdict === "answered" ? String(answer.label)
    : verdict === "unsure" ? `${answer.candidates[0]} or ${answer.candidates[1]}?` : "not a digit";
  output.dataset.label = answer.digit_found ? String(answer.label) : "none";
  output.dataset.verdict = verdict;
  verdictLine.textContent = verdict === "answered" ? `${(answer.confidence * 100).toFixed(1)}% sure`
    : verdict === "unsure" ? `unsure: ${(answer.confidence * 100).toFixed(1)}% at most`
    : answer.probabilities ? "this does not look like a handwritten digit" : "too little ink to be a digit";
  const probabilities = answer.probabilities || new Array(10).fill(0);
  const top = answer.digit_found ? answer.label : -1;
  [...bars.children].forEach((li, d) => {
    li.classList.toggle("top", d === top);
    li.querySelector(".bar span").style.width = `${(probabilities[d] * 100).toFixed(1)}%`;
    li.querySelector(".pct").textContent = answer.probabilities ? `${(probabilities[d] * 100).toFixed(1)}%` : "–";
  });
  drawSeen(answer.image);
}

function drawSeen(image) {
  const seenCtx = seen.getContext("2d");
  const pixels = seenCtx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = image ? image[Math.floor(i / 28)][i % 28] : 0;
    pixels.data.set([v, v, v, 255], i * 4);
  }
  seenCtx.putImageData(pixels, 0, 0);
}

function showEmpty() {
  state.shown = ++state.sent;  // forget answers still on their way
  showReading({ digit_found: false, label: null, probabilities: null, image: null });
  output.textContent = "–";
  output.dataset.label = "";
  output.dataset.verdict = "";
}

function showError(message) {
  // The previous reading must not stay on screen as if it were this input's.
  showReading({ digit_found: false, label: null, probabilities: null, image: null });
  output.textContent = "–";
  output.dataset.verdict = "";
  statusLine.textContent = message;
  output.dataset.label = "error";
}

document.getElementById("undo").addEventListener("click", () => { strokes.pop(); paint(); predictNow(); });
document.getElementById("clear").addEventListener("click", () => { strokes.length = 0; paint(); predictNow(); });
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") document.getElementById("clear").click();
  if (event.key === "z" && (event.ctrlKey || event.metaKey)) document.getElementById("undo").click();
});

document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  send(form, null);  // the browser sets the multipart boundary itself
  event.target.value = "";
});

async function loadCard() {
  try {
    const card = await (await fetch("/api/model")).json();
    const args = Object.entries(card.args || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
    const model = args ? `${card.architecture} (${args})` : card.architecture;
    const members = card.members || [];
    const ensemble = card.kind === "ensemble";
    document.getElementById("card-model").textContent =
      (ensemble ? `ensemble of ${members.length} × ${model}` : model) + (card.tta ? ", test-time shifts" : "");
    const list = document.getElementById("card-members");
    list.replaceChildren(...members.map((m) => {
      const line = document.createElement("div");
      const measured = m.accuracy === null ? "not measured" : `${(m.accuracy * 100).toFixed(2)}% ${m.accuracy_source}`;
      line.textContent = `${m.name}: ${m.parameters.toLocaleString("en")} parameters, ${measured}, ${m.precision}`;
      return line;
    }));
    list.hidden = document.getElementById("card-members-label").hidden = !ensemble;
    document.getElementById("card-parameters").textContent = card.parameters.toLocaleString("en");
    document.getElementById("card-accuracy-label").textContent =
      card.accuracy_source ? `${card.accuracy_source} accuracy` : "accuracy";
    document.getElementById("card-accuracy").textContent =
      card.accuracy === null ? "not measured" : `${(card.accuracy * 100).toFixed(2)}%`;
    document.getElementById("card-version").textContent = card.version;
    document.getElementById("card-runtime").textContent = card.runtime;
    document.getElementById("card-calibration").textContent = card.calibration;
  } catch (error) {
    statusLine.textContent = `cannot load the model card (${error})`;
  }
}

buildBars();
paint();
drawSeen(null);
loadCard();
