"""A real run's output folder, served by `retrain serve`, used from its page in headless Chromium.

Uses Debian's chromium (apt-get install chromium) through Playwright for Python; Playwright's own
browsers are never downloaded. Skipped, saying why, when either is missing.
"""
from __future__ import annotations

import base64

import pytest

import retrain
from browser import chromium_page, needs_chromium
from serve_client import Server

DROP = """async ([files]) => {
  const transfer = new DataTransfer();
  for (const [name, data] of files) {
    const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, {type: "image/png"}));
  }
  const target = document.getElementById("drop");
  target.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
  target.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


@pytest.mark.slow
@needs_chromium
def test_a_browser_drops_two_images_and_sees_their_labels(colour_images, fake_module, tmp_path):
    pytest.importorskip("uvicorn", reason='the serve extra is not installed (pip install "retrain[serve]")')
    out = tmp_path / "out"
    retrain.run(retrain.Config(images=colour_images, module=str(fake_module), output=out, epochs=60, patience=15,
                               image_size=32))
    assert (out / "models.config").is_file() and (out / "batching_parameters.txt").is_file()
    dropped = {label: next((colour_images / label).iterdir()) for label in ("red", "blue")}
    server = Server(out, log_path=tmp_path / "serve.log")  # the run folder: its saved_model/ is served
    errors: list[str] = []
    try:
        with chromium_page(errors) as page:
            page.goto(server.url, wait_until="load")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('serving versions')")
            files = [[f"{label}.png", base64.b64encode(path.read_bytes()).decode()] for label, path in dropped.items()]
            page.evaluate(DROP, [files])
            page.wait_for_function("document.querySelectorAll('.card.done').length == 2")
            cards = page.evaluate("""Array.from(document.querySelectorAll('.card'), card => ({
                file: card.querySelector('.file').textContent, who: card.querySelector('.who').textContent,
                labels: Array.from(card.querySelectorAll('.label'), l => l.textContent),
                bars: Array.from(card.querySelectorAll('.bar'), b => parseFloat(b.style.width)),
                thumbnail: card.querySelector('img').complete && card.querySelector('img').naturalWidth}))""")
            status = page.inner_text("#status")
    finally:
        server.stop()
    assert errors == []
    assert status == "serving versions 1 (AVAILABLE)"
    assert sorted(card["file"] for card in cards) == ["blue.png", "red.png"]
    for card in cards:
        assert card["labels"][0] == card["file"].removesuffix(".png"), card  # the top label is the right colour
        assert card["who"] == "answered by model version 1" and card["thumbnail"] > 0, card
        assert card["bars"] == sorted(card["bars"], reverse=True) and card["bars"][0] > 50, card
    assert not server.alive()
