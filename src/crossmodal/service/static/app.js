// crossmodal's search page: no framework, no CDN; talks to /api only.
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("crossmodal-token") || "";
let lastQuery = null;
let lastText = "";  // the text of the last search, for "Where?" heat maps

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

function render(hits, label) {
  const main = $("results");
  main.replaceChildren();
  status(hits.length ? `${hits.length} results for ${label}` : `nothing found for ${label}`);
  hits.forEach((hit, i) => {
    const card = document.createElement("article");
    card.className = "card" + (hit.weak ? " weak" : "");
    card.dataset.name = hit.name;
    const img = document.createElement("img");
    img.alt = hit.name;
    thumbnail(img, hit.thumbnail).catch((e) => { img.alt = hit.name + " (" + e.message + ")"; });
    const link = document.createElement("a");
    link.className = "name";
    link.textContent = hit.name + (hit.time !== null ? ` at ${hit.time.toFixed(1)} s` : "");
    link.href = "#";
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      const response = await call(hit.file);
      window.open(URL.createObjectURL(await response.blob()), "_blank");
    });
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}` + (hit.weak ? " · weak match" : "");
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.textContent = "More like this";
    more.addEventListener("click", () => search({image_id: hit.id}, "“" + hit.name + "”"));
    card.append(img, link, score, more);
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

async function search(body, label) {
  lastQuery = () => search(body, label);
  lastText = body.text || "";
  status("searching…");
  try {
    const response = await call("/api/search", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(Object.assign({k: 24}, body)),
    });
    render((await response.json()).hits, label);
  } catch (e) { status(e.message); }
}

async function searchPicture(file) {
  const text = $("q").value.trim();
  lastQuery = () => searchPicture(file);
  lastText = text;
  status("searching…");
  const form = new FormData();
  form.append("file", file);
  form.append("k", "24");
  if (text) form.append("text", text);
  try {
    const response = await call("/api/search/upload", {method: "POST", body: form});
    render((await response.json()).hits, "your picture" + (text ? " + “" + text + "”" : ""));
  } catch (e) { status(e.message); }
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
  if (lastQuery) lastQuery();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && document.activeElement !== $("q")) { event.preventDefault(); $("q").focus(); }
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
