// medseg's volume viewer: a Streamlit component over NiiVue (niivue.umd.js, vendored by
// scripts/build_viewer.sh). It speaks Streamlit's component protocol itself (postMessage), so
// it needs no bundler and nothing is fetched at run time.
//
// Args (from medseg/app/volume_viewer.py): image (base64 .nii.gz), overlays ([{name, data,
// lut: {R, G, B, I, labels}}]), opacity, outline, crosshair_mm, planes, height, key_of_data.
// Value sent back: {webgl: true} once the canvas draws, or {webgl: false, error} when the
// browser has no WebGL2 (the page then shows its PNG view).
"use strict";

const PLANES = { axial: 0, coronal: 1, sagittal: 2, multiplanar: 3 };
const ZOOM_STEP = 1.25;
const BAR_PX = 34;  // the tool bar above the canvas
let nv = null;
let loadedData = null;   // key_of_data of the volumes on the canvas
let shownCrosshair = null;
let reported = false;
let frameHeight = null;

function send(type, extra) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...extra }, "*");
}

function setHeight(height) {
  if (height !== frameHeight) {
    frameHeight = height;
    send("streamlit:setFrameHeight", { height });
  }
}

function report(value) {
  if (!reported) {
    reported = true;
    send("streamlit:setComponentValue", { value, dataType: "json" });
  }
}

function bytes(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out.buffer;
}

function planeButtons(planes) {
  const holder = document.getElementById("planes");
  holder.replaceChildren();
  if (planes.length < 2) return;
  planes.forEach((plane, i) => {
    const button = document.createElement("button");
    button.textContent = plane[0].toUpperCase() + plane.slice(1);
    button.title = `${button.textContent} (${i + 1})`;
    button.dataset.plane = plane;
    button.addEventListener("click", () => showPlane(plane));
    holder.appendChild(button);
  });
}

function showPlane(plane) {
  nv.setSliceType(PLANES[plane]);
  for (const button of document.querySelectorAll("#planes button")) {
    button.setAttribute("aria-pressed", String(button.dataset.plane === plane));
  }
}

function zoom(factor) {
  const [x, y, z, scale] = nv.scene.pan2Dxyzmm;
  nv.setPan2Dxyzmm([x, y, z, Math.min(Math.max(scale * factor, 0.5), 16)]);
}

function windowTo(which) {
  const volume = nv.volumes[0];
  volume.cal_min = which === "auto" ? volume.robust_min : volume.global_min;
  volume.cal_max = which === "auto" ? volume.robust_max : volume.global_max;
  nv.updateGLVolume();
  readout();
}

function readout() {
  const volume = nv.volumes[0];
  if (volume) {
    document.getElementById("readout").textContent =
      `window ${Math.round(volume.cal_min)}–${Math.round(volume.cal_max)}, ` +
      `zoom ${nv.scene.pan2Dxyzmm[3].toFixed(2)}×`;
  }
}

function shortcuts(event) {
  const actions = {
    "+": () => zoom(ZOOM_STEP), "=": () => zoom(ZOOM_STEP), "-": () => zoom(1 / ZOOM_STEP),
    r: () => nv.setPan2Dxyzmm([0, 0, 0, 1]), a: () => windowTo("auto"), f: () => windowTo("full"),
  };
  const planes = [...document.querySelectorAll("#planes button")];
  const index = Number(event.key) - 1;
  if (index >= 0 && index < planes.length) {
    showPlane(planes[index].dataset.plane);
  } else if (actions[event.key]) {
    actions[event.key]();
  } else {
    return;
  }
  readout();
}

async function start() {
  nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1], show3Dcrosshair: false, isResizeCanvas: true,
    dragAndDropEnabled: false, isNearestInterpolation: true, logLevel: "error",
    crosshairColor: [1, 1, 1, 0.5],
    isRadiologicalConvention: true,  // as the PNG view: the patient's right on the left
  });
  // left: crosshair (shift: window/level), right: window/level, middle: pan
  nv.setMouseEventConfig({
    leftButton: { primary: niivue.DRAG_MODE.crosshair, withShift: niivue.DRAG_MODE.windowing },
    rightButton: niivue.DRAG_MODE.windowing,
    centerButton: niivue.DRAG_MODE.pan,
  });
  await nv.attachToCanvas(document.getElementById("view"));
  nv.onIntensityChange = readout;
  document.getElementById("zoom-in").onclick = () => { zoom(ZOOM_STEP); readout(); };
  document.getElementById("zoom-out").onclick = () => { zoom(1 / ZOOM_STEP); readout(); };
  document.getElementById("reset-view").onclick = () => { nv.setPan2Dxyzmm([0, 0, 0, 1]); readout(); };
  document.getElementById("auto-window").onclick = () => windowTo("auto");
  document.getElementById("full-window").onclick = () => windowTo("full");
  document.getElementById("view").addEventListener("keydown", shortcuts);
}

async function load(args) {
  for (const volume of [...nv.volumes].reverse()) nv.removeVolume(volume);
  const image = await niivue.NVImage.new(bytes(args.image), "image.nii.gz", "gray", 1.0);
  nv.addVolume(image);
  for (const overlay of args.overlays) {
    const label = await niivue.NVImage.new(bytes(overlay.data), `${overlay.name}.nii.gz`, "gray", 1.0);
    label.setColormapLabel(overlay.lut);
    nv.addVolume(label);
  }
  loadedData = args.key_of_data;
  shownCrosshair = null;
}

function restyle(args) {
  for (let i = 1; i < nv.volumes.length; i++) nv.setOpacity(i, args.opacity);
  nv.overlayOutlineWidth = args.outline ? 1 : 0;
  const crosshair = JSON.stringify(args.crosshair_mm);
  if (crosshair !== shownCrosshair) {  // a new slice from the page; else keep the user's
    nv.scene.crosshairPos = nv.mm2frac(args.crosshair_mm);
    shownCrosshair = crosshair;
  }
  nv.updateGLVolume();
  readout();
}

let started = null;
let queue = Promise.resolve();

async function render(args) {
  document.getElementById("holder").style.height = `${Math.max(args.height - BAR_PX, 0)}px`;
  try {
    if (started === null) started = start();
    await started;
  } catch (error) {
    setHeight(0);
    report({ webgl: false, error: String(error && error.message ? error.message : error) });
    return;
  }
  setHeight(args.height);
  if (loadedData !== args.key_of_data) {
    planeButtons(args.planes);
    await load(args);
    showPlane(args.planes[0]);
  }
  restyle(args);
  report({ webgl: true });
}

window.addEventListener("message", (event) => {
  if (event.data && event.data.type === "streamlit:render") {
    const args = event.data.args;
    queue = queue.then(() => render(args)).catch((error) => {
      console.error(error);
      report({ webgl: true, error: String(error) });
    });
  }
});
send("streamlit:componentReady", { apiVersion: 1 });
