"""The page at `/`: drop or pick images, see each one's top labels as score bars and which version answered.

One self-contained HTML document (no CDN, no external file: it works offline). Each image goes to
:predict as its own row-format request with a {"b64": ...} instance, exactly as any client of TF
Serving would send it, so a page that works here works against TF Serving's REST port too.
"""
from __future__ import annotations

import html
import json

TOP = 5  # labels shown per image

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>retrain serve: __NAME__</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
#drop{border:3px dashed #89a;border-radius:12px;padding:2.5rem;text-align:center;cursor:pointer;background:#f7f9fb}
#drop.over{background:#e3f0ff;border-color:#37c}
.card{display:flex;gap:1rem;align-items:flex-start;border-bottom:1px solid #ddd;padding:.8rem 0}
.card img{width:112px;height:112px;object-fit:cover;border-radius:6px;background:#eee}
.rows{flex:1}.file{font-weight:600;word-break:break-all}.who{color:#667;font-size:.85em}
.row{display:grid;grid-template-columns:12rem 1fr 4rem;gap:.5rem;align-items:center;margin:.15rem 0}
.bar{height:.8rem;background:#37c;border-radius:3px}.track{background:#e8ecf0;border-radius:3px}
.error{color:#b00}.label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
</style></head>
<body data-model="__MODEL__" data-top="__TOP__">
<h1>Model <code id="model"></code></h1>
<p id="status" class="who">asking the server which versions it serves...</p>
<label id="drop" for="pick">Drop images here, or click to pick them
<input id="pick" type="file" accept="image/*" multiple hidden></label>
<div id="results"></div>
<script>
"use strict";
const model = document.body.dataset.model, shown = Number(document.body.dataset.top);  // not "top": window.top
const base = "/v1/models/" + encodeURIComponent(model);
document.getElementById("model").textContent = model;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function status() {
  const line = document.getElementById("status");
  try {
    const answer = await (await fetch(base)).json();
    line.textContent = answer.error ? answer.error : "serving versions " +
      answer.model_version_status.map(s => s.version + " (" + s.state + ")").join(", ");
  } catch (e) { line.textContent = "the server does not answer: " + e; }
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function classify(file) {
  const card = el("div", "card"), picture = el("img"), rows = el("div", "rows");
  picture.src = URL.createObjectURL(file);
  picture.alt = file.name;
  rows.append(el("div", "file", file.name), el("div", "who", "asking..."));
  card.append(picture, rows);
  document.getElementById("results").prepend(card);
  const who = rows.lastChild;
  try {
    const body = JSON.stringify({instances: [{b64: await base64(file)}]});
    const response = await fetch(base + ":predict", {method: "POST", body: body,
                                                      headers: {"Content-Type": "application/json"}});
    const answer = await response.json();
    if (answer.error) throw new Error(answer.error);
    const p = answer.predictions[0];
    const order = p.scores.map((s, i) => i).sort((a, b) => p.scores[b] - p.scores[a]).slice(0, shown);
    who.textContent = "answered by " + response.headers.get("X-Model-Name") + " version " +
                      response.headers.get("X-Model-Version");
    for (const i of order) {
      const row = el("div", "row"), track = el("div", "track"), bar = el("div", "bar");
      bar.style.width = (100 * p.scores[i]).toFixed(1) + "%";
      track.append(bar);
      row.append(el("span", "label", p.classes[i]), track, el("span", "score", (100 * p.scores[i]).toFixed(1) + " %"));
      rows.append(row);
    }
    card.classList.add("done");
  } catch (e) {
    who.textContent = "refused: " + e.message;
    who.className = "who error";
    card.classList.add("done", "failed");
  }
}

function take(files) { for (const f of files) classify(f); }
const drop = document.getElementById("drop");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); });
document.getElementById("pick").addEventListener("change", e => take(e.target.files));
status();
</script></body></html>
"""


def html_page(name: str) -> str:
    """The page for model `name` (escaped into an attribute; the script reads it from there)."""
    return (_PAGE.replace("__NAME__", html.escape(name)).replace("__MODEL__", html.escape(name, quote=True))
            .replace("__TOP__", json.dumps(TOP)))
