// crossmodal's search page: no framework, no CDN; talks to /api only.
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("crossmodal-token") || "";
let lastQuery = null;
let lastText = "";  // the text of the last search, for "Where?" heat maps
let hits = [];  // the hits shown, in order
let viewing = -1;  // the hit in the larger view

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function call(path, options) {
  const response = await fetch(path, Object.assign({}, options, {headers: headers(options && options.headers)}));
  if (response.status === 401) {
    $("auth").hidden = false;
    $("token").focus();
    throw new Error("this server needs an access token");
  }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function status(text) { $("status").textContent = text; }

async function thumbnail(img, url) {
  const response = await call(url);
  img.src = URL.createObjectURL(await response.blob());
}

function when(hit) {  // "modified 2024-05-01" (the local day, as the date filters read it)
  if (!hit.mtime) return "";
  const d = new Date(hit.mtime * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `modified ${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
}

function title(hit) {  // what the picture is: its caption (or label), else its file name
  return hit.caption || hit.name;
}

function render(found, label) {
  hits = found;
  viewing = -1;
  const main = $("results");
  main.replaceChildren();
  const only = describeFilters();
  const scope = only ? ` (${only})` : "";
  status(hits.length ? `${hits.length} results for ${label}${scope}` : `nothing found for ${label}${scope}`);
  hits.forEach((hit, i) => {
    const card = document.createElement("article");
    card.className = "card" + (hit.weak ? " weak" : "");
    card.dataset.name = hit.name;
    const view = document.createElement("button");
    view.type = "button";
    view.className = "view";
    view.setAttribute("aria-label", "Larger view of " + title(hit));
    const img = document.createElement("img");
    img.alt = title(hit);
    thumbnail(img, hit.thumbnail).catch((e) => { img.alt = hit.name + " (" + e.message + ")"; });
    view.append(img);
    view.addEventListener("click", () => openViewer(i));
    card.append(view);
    if (hit.caption) {
      const caption = document.createElement("p");
      caption.className = "caption";
      caption.textContent = hit.caption;
      caption.title = hit.caption;
      card.append(caption);
    }
    const link = document.createElement("a");
    link.className = "name";
    link.textContent = (hit.where || hit.name) + (hit.time !== null ? ` at ${hit.time.toFixed(1)} s` : "");
    link.title = hit.where || hit.name;
    link.href = "#";
    link.addEventListener("click", (event) => { event.preventDefault(); openOriginal(hit); });
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}` + (hit.weak ? " · weak match" : "");
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "More like this";
    more.addEventListener("click", () => search({image_id: hit.id}, "“" + hit.name + "”"));
    card.append(link, score, more);
    if (lastText) {
      const where = document.createElement("button");
      where.type = "button";
      where.className = "where";
      where.textContent = "Where?";
      where.title = "Show where “" + lastText + "” falls in the picture";
      const query = lastText;
      where.addEventListener("click", () => {
        const t = hit.time !== null ? "&t=" + hit.time : "";
        thumbnail(img, `/api/explain/${hit.id}?text=${encodeURIComponent(query)}${t}`)
          .then(() => { img.alt = hit.name + " with a heat map of “" + query + "”"; card.classList.add("explained"); })
          .catch((e) => status(e.message));
      });
      card.append(where);
    }
    main.append(card);
    if (i === 0) card.setAttribute("aria-current", "true");
  });
}

async function openOriginal(hit) {
  try {
    const response = await call(hit.file);
    window.open(URL.createObjectURL(await response.blob()), "_blank");
  } catch (e) { status(e.message); }
}

// The larger view: a modal <dialog> (Escape closes it natively); ←/→ step through the hits;
// on closing, focus goes back to the card of the hit last viewed.
function openViewer(i) {
  showHit(i);
  if (!$("viewer").open) $("viewer").showModal();
  $("viewer-close").focus();
}

function showHit(i) {
  if (i < 0 || i >= hits.length) return;
  viewing = i;
  const hit = hits[i];
  const img = $("viewer-img");
  const card = $("results").children[i];
  const small = card && card.querySelector("img");
  if (small && small.src) img.src = small.src;  // the thumbnail until the larger picture comes
  img.alt = title(hit);
  const preview = hit.preview || hit.thumbnail;
  call(preview).then((r) => r.blob()).then((blob) => {
    if (viewing !== i) return;  // stepped on meanwhile
    if (img.dataset.own) URL.revokeObjectURL(img.dataset.own);
    img.dataset.own = img.src = URL.createObjectURL(blob);
  }).catch((e) => status(e.message));
  $("viewer-caption").textContent = title(hit);
  $("viewer-where").textContent = hit.where || hit.name;
  const frame = hit.time !== null ? `video frame at ${hit.time.toFixed(1)} s` : hit.kind === "video" ? "video" : "picture";
  const facts = [`score ${hit.score.toFixed(3)}` + (hit.weak ? " (weak match)" : ""), frame, when(hit)];
  $("viewer-meta").replaceChildren(...facts.filter(Boolean).map((fact) => {
    const span = document.createElement("span");
    span.textContent = fact;
    return span;
  }));
  $("viewer-count").textContent = `${i + 1} of ${hits.length}`;
  $("viewer-prev").disabled = i === 0;
  $("viewer-next").disabled = i === hits.length - 1;
}

function describeFilters() {  // the filters in force, for the status line
  const parts = [];
  const folder = $("folder");
  if (folder.value) parts.push("in " + folder.selectedOptions[0].dataset.label);
  if ($("kind").value) parts.push($("kind").value === "image" ? "pictures" : "video frames");
  if ($("after").value) parts.push("from " + $("after").value);
  if ($("before").value) parts.push("to " + $("before").value);
  return parts.join(", ");
}

function filters() {  // the filters as the API takes them; "to" includes its own day
  const f = {};
  if ($("folder").value) f.folder = $("folder").value;
  if ($("kind").value) f.kind = $("kind").value;
  if ($("after").value) f.after = $("after").value;
  if ($("before").value) {
    const day = new Date($("before").value + "T00:00:00Z");
    day.setUTCDate(day.getUTCDate() + 1);
    f.before = day.toISOString().slice(0, 10);
  }
  return f;
}

async function loadFolders() {  // quietly: a server with a token answers once it has one
  try {
    const response = await fetch("/api/folders", {headers: headers()});
    if (!response.ok) return;
    const select = $("folder");
    const chosen = select.value;
    select.replaceChildren(select.options[0]);
    for (const folder of (await response.json()).folders) {
      const option = document.createElement("option");
      option.value = folder.path;
      option.dataset.label = folder.label;
      option.textContent = `${folder.label} (${folder.files})`;
      select.append(option);
    }
    select.value = chosen;
    if (select.value !== chosen) select.value = "";
  } catch (e) { /* the filter stays at "all folders" */ }
}

// Only the latest search is shown: a slower answer to an earlier one (a filter changed twice
// in a row) must not replace it.
let searches = 0;

async function search(body, label) {
  lastQuery = () => search(body, label);
  lastText = body.text || "";
  await ask(label, "/api/search", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(Object.assign({k: 24}, body, filters())),
  });
}

async function searchPicture(file) {
  const text = $("q").value.trim();
  lastQuery = () => searchPicture(file);
  lastText = text;
  const form = new FormData();
  form.append("file", file);
  form.append("k", "24");
  if (text) form.append("text", text);
  for (const [name, value] of Object.entries(filters())) form.append(name, value);
  await ask("your picture" + (text ? " + “" + text + "”" : ""), "/api/search/upload", {method: "POST", body: form});
}

async function ask(label, path, options) {
  const mine = ++searches;
  status("searching…");
  try {
    const found = (await (await call(path, options)).json()).hits;
    if (mine === searches) render(found, label);
  } catch (e) { if (mine === searches) status(e.message); }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("q").value.trim();
  if (text) search({text}, "“" + text + "”");
});
$("file").addEventListener("change", () => { if ($("file").files[0]) searchPicture($("file").files[0]); });
$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("crossmodal-token", token);
  $("auth").hidden = true;
  loadFolders();
  if (lastQuery) lastQuery();
});
for (const id of ["folder", "kind", "after", "before"]) {
  $(id).addEventListener("change", () => { if (lastQuery) lastQuery(); });
}
document.addEventListener("keydown", (event) => {  // on the document: a button just disabled
  if (!$("viewer").open) return;                    // at either end drops the focus to <body>
  if (event.key === "ArrowLeft") { event.preventDefault(); showHit(viewing - 1); }
  if (event.key === "ArrowRight") { event.preventDefault(); showHit(viewing + 1); }
});
$("viewer").addEventListener("click", (event) => { if (event.target === $("viewer")) $("viewer").close(); });
$("viewer").addEventListener("close", () => {
  const card = $("results").children[viewing];
  if (card) card.querySelector("button.view").focus();
});
$("viewer-prev").addEventListener("click", () => showHit(viewing - 1));
$("viewer-next").addEventListener("click", () => showHit(viewing + 1));
$("viewer-close").addEventListener("click", () => $("viewer").close());
$("viewer-open").addEventListener("click", () => { if (hits[viewing]) openOriginal(hits[viewing]); });
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && document.activeElement !== $("q") && !$("viewer").open) {
    event.preventDefault();
    $("q").focus();
  }
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
  if (item) { event.preventDefault(); searchPicture(item.getAsFile()); }
});
let dragDepth = 0;
document.addEventListener("dragenter", (event) => { event.preventDefault(); dragDepth++; $("drop").hidden = false; });
document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop").hidden = true; } });
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  const file = [...(event.dataTransfer || {}).files || []].find((f) => f.type.startsWith("image/"));
  if (file) searchPicture(file); else status("drop a picture file");
});
loadFolders();
