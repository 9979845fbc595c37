"""report.html: one self-contained page (pictures inlined as data: URIs, CSS inline, no script, no network)."""
from __future__ import annotations

import base64
import io
import json
import logging
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from retrain.errors import printable
from retrain.fs import write_atomic

log = logging.getLogger(__name__)
THUMB_PX = 96     # longest side of a misclassified image's thumbnail
MAX_THUMBS = 24   # the most confident mistakes shown; the rest are in misclassified.csv
CSS = """
*{box-sizing:border-box}body{margin:0;background:#f4f5f7;color:#1f2937;
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:0 0 14px}.sub{color:#6b7280;margin:0 0 22px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:20px 22px;margin:0 0 20px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:0 0 20px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:14px 16px}
.card b{display:block;font-size:26px;font-weight:650}.card span{color:#6b7280;font-size:13px}
.card.other{background:#f9fafb}.card.other b{font-size:20px;color:#4b5563}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 10px;border-bottom:1px solid #eef0f3;text-align:left;vertical-align:top}
th{color:#6b7280;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
td.n{text-align:right;font-variant-numeric:tabular-nums}.facts td:first-child{color:#6b7280;width:32%}
.bar{display:inline-block;height:8px;border-radius:4px;background:#3b82f6;vertical-align:middle}
.low td{background:#fff7ed}img.plot{max-width:100%;height:auto;display:block;margin:0 auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:14px}
figure{margin:0;border:1px solid #eef0f3;border-radius:8px;padding:10px;text-align:center;font-size:13px}
figure img{width:96px;height:96px;object-fit:contain;background:#f9fafb;image-rendering:auto}
figcaption{margin-top:6px;word-break:break-word}.wrong{color:#b91c1c}.muted{color:#6b7280}
ul.pairs{margin:0;padding-left:20px}
.pair{display:flex;gap:6px;justify-content:center}h3{font-size:15px;margin:16px 0 10px}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(230px,1fr))}
"""
DATA_KINDS = {"exact_duplicate": "Exact duplicates (same bytes)", "near_duplicate": "Near-copies of training images",
              "label_error": "Likely label errors", "outlier": "Outliers (far from every class)",
              "small_image": "Small images"}


def thumbnail_jpeg(path: Path, size: int = THUMB_PX) -> bytes | None:
    """A JPEG of the image's first frame, longest side `size` pixels, or None if Pillow cannot read it.

    EXIF orientation is ignored on purpose (TensorFlow's decoders ignore it, so this shows the pixels
    the model saw) and no EXIF is copied. 16-bit images keep their high byte, as training does.
    """
    try:
        with Image.open(path) as image:
            image.seek(0)
            image.draft("RGB", (size, size))  # JPEGs decode at a fraction of full size: fast on big photos
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                image = Image.fromarray((np.asarray(image, np.uint32) >> 8).clip(0, 255).astype(np.uint8))
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            return buffer.getvalue()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        log.warning("no thumbnail for %s: %s", path, e)
        return None


def data_uri(raw: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else escape(str(value))


def _cards(summary: dict, summaries: dict[str, dict]) -> str:
    shown = [("accuracy", "accuracy"), ("top5_accuracy", "top-5 accuracy"), ("loss", "loss (cross-entropy)"),
             ("ece", "calibration error (ECE)")]
    cards = [(summary[key], name) for key, name in shown if key in summary]
    cards.append((summary["macro"]["f1"], "macro F1"))
    html = "".join(f'<div class="card"><b>{_number(v)}</b><span>{escape(n)}</span></div>' for v, n in cards)
    return html + "".join(f'<div class="card other"><b>{_number(s["accuracy"])}</b><span>{escape(name)} accuracy '
                          f'({s["count"]} images)</span></div>' for name, s in summaries.items() if s is not summary)


def _facts(facts: dict) -> str:
    def show(value) -> str:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return escape(text)
    return "".join(f"<tr><td>{escape(str(k))}</td><td>{show(v)}</td></tr>" for k, v in facts.items())


def _per_class(summary: dict) -> str:
    rows = []
    for label, c in summary["per_class"].items():
        low = ' class="low"' if c["support"] and c["f1"] < summary["macro"]["f1"] - 0.1 else ""
        bar = f'<span class="bar" style="width:{round(60 * c["f1"])}px"></span>'
        rows.append(f'<tr{low}><td>{escape(label)}</td><td class="n">{_number(c["precision"])}</td>'
                    f'<td class="n">{_number(c["recall"])}</td><td class="n">{_number(c["f1"])} {bar}</td>'
                    f'<td class="n">{c["support"]}</td></tr>')
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _worst(worst: list[tuple[str, str, str, float]], images_root: Path) -> str:
    figures = []
    for rel, true, predicted, score in worst[:MAX_THUMBS]:
        jpeg = thumbnail_jpeg(images_root / rel)
        picture = (f'<img src="{data_uri(jpeg, "image/jpeg")}" alt="{escape(rel)}">' if jpeg
                   else '<div class="muted">(unreadable)</div>')
        figures.append(f'<figure>{picture}<figcaption>true <b>{escape(true)}</b><br>'
                       f'<span class="wrong">said {escape(predicted)} ({score:.2f})</span><br>'
                       f'<span class="muted">{escape(rel)}</span></figcaption></figure>')
    return f'<div class="grid">{"".join(figures)}</div>' if figures else '<p class="muted">No mistakes.</p>'


def _thumb(path: Path | None, alt: str) -> str:
    jpeg = thumbnail_jpeg(path) if path is not None else None
    return f'<img src="{data_uri(jpeg, "image/jpeg")}" alt="{escape(printable(alt))}">' if jpeg else \
        '<div class="muted">(unreadable)</div>'


def _issue_figure(issue) -> str:
    """One issue as a figure: the image beside its duplicate, or with its given and suggested label."""
    if issue.partner_file is not None:
        words = "under two labels" if issue.suggested_label else "copy" if issue.kind == "exact_duplicate" else \
            f"cosine {issue.score:.3f}"
        return (f'<figure><div class="pair">{_thumb(issue.file, issue.path)}{_thumb(issue.partner_file, issue.partner)}'
                f'</div><figcaption><b>{escape(words)}</b>'
                + (f'<br>{escape(issue.label)} / <span class="wrong">{escape(issue.suggested_label)}</span>'
                   if issue.suggested_label else "")
                + f'<br><span class="muted">{escape(printable(issue.path))}<br>'
                  f'{escape(printable(issue.partner))}</span>'
                '</figcaption></figure>')
    caption = f"filed as <b>{escape(issue.label)}</b>"
    if issue.kind == "label_error":
        caption += (f'<br><span class="wrong">likely {escape(issue.suggested_label)}</span> '
                    f'(suspicion {issue.score:.2f} of 1)')
    elif issue.kind == "outlier":
        caption += f"<br>{issue.score:.2f}x the class radius"
    else:
        caption += f"<br>{issue.score:.2f}x the input side"
    return (f'<figure>{_thumb(issue.file, issue.path)}<figcaption>{caption}<br>'
            f'<span class="muted">{escape(printable(issue.path))}</span></figcaption></figure>')


def data_section(data) -> str:
    """The Data section: the audit's summary, class balance, then thumbnails of each kind, worst first.
    data: retrain.audit.examine.Audit (issues, counts, balance, line), read as plain values."""
    if data is None:
        return ""
    balance = "".join(f"<tr><td>{escape(label)}</td><td class=\"n\">{n}</td></tr>" for label, n in data.balance.items())
    parts = [f"<p>{escape(data.line)}</p>", '<table class="facts"><tr><th>class</th><th>images</th></tr>'
             f"{balance}</table>"]
    for kind, heading in DATA_KINDS.items():
        mine = [i for i in data.issues if i.kind == kind]
        if not mine:
            continue
        shown = mine[:MAX_THUMBS] if kind != "small_image" else mine[:6]
        wide = " wide" if any(i.partner_file is not None for i in shown) else ""
        parts.append(f'<h3>{escape(heading)}: {len(mine)}</h3><div class="grid{wide}">'
                     f'{"".join(_issue_figure(i) for i in shown)}</div>')
    return f'<section id="data"><h2>Data</h2>{"".join(parts)}</section>'


def write_data_page(path: Path, *, title: str, facts: dict, data) -> None:
    """report.html of `retrain check`: the facts and the Data section only (no model was trained)."""
    write_atomic(path, f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><title>{escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(title)}</h1>
<section><h2>Summary</h2><table class="facts">{_facts(facts)}</table></section>
{data_section(data)}
</main></body></html>
""")


def write_html(path: Path, *, title: str, facts: dict, summaries: dict[str, dict], focus: str, labels: list[str],
               pictures: dict[str, Path], worst: list[tuple[str, str, str, float]], images_root: Path,
               data=None) -> None:
    """Write the page atomically. summaries: metrics.compute(...).summary by split name; focus: the split
    the tables and pictures describe; pictures: heading -> PNG file to inline; worst: (path relative to
    images_root, true, predicted, score), most confident mistakes first; data: the data audit, or None.
    Every label and path is escaped."""
    summary = summaries[focus]
    pairs = "".join(f"<li><b>{escape(p['true'])}</b> taken for <b>{escape(p['predicted'])}</b>: {p['count']}</li>"
                    for p in summary["most_confused"]) or "<li>none</li>"
    plots = "".join(f'<section><h2>{escape(name)}</h2>'
                    f'<img class="plot" src="{data_uri(Path(png).read_bytes(), "image/png")}" alt="{escape(name)}">'
                    f"</section>" for name, png in pictures.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,"><title>{escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{escape(title)}</h1>
<p class="sub">{len(labels)} classes · figures on the <b>{escape(focus)}</b> split ({summary['count']} images)</p>
<div class="cards">{_cards(summary, summaries)}</div>
<section><h2>Summary</h2><table class="facts">{_facts(facts)}</table></section>
<section><h2>Most confused ({escape(focus)})</h2><ul class="pairs">{pairs}</ul></section>
<section><h2>Per class ({escape(focus)})</h2>{_per_class(summary)}</section>
{plots}
<section><h2>Most confident mistakes ({escape(focus)})</h2>{_worst(worst, images_root)}</section>
{data_section(data)}
</main></body></html>
"""
    write_atomic(path, page.encode("utf-8", "backslashreplace"))  # a non-UTF-8 file name shows as \udcNN
