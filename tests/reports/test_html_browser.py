"""report.html of a real run, opened in headless Chromium: no console errors, every image shown, every class listed.

Uses Debian's chromium (apt-get install chromium) through Playwright for Python; Playwright's own
browsers are never downloaded. Skipped, saying why, when either is missing.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import retrain
from fake_data import colour_set, write_images

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LABELS = ['blue <"sky">', "grün", "red"]  # the page must escape and still show them


@pytest.fixture
def real_report(fake_module, tmp_path) -> tuple[Path, list[str]]:
    """The report.html of a run on solid colours with red images filed under blue, so it shows mistakes."""
    colours = dict(zip(LABELS, colour_set(n=12).values()))
    colours[LABELS[0]] = colours[LABELS[0]] + [(200 + 5 * i, 25 + i, 35 - i) for i in range(6)]
    images = write_images(tmp_path / "images", colours)
    result = retrain.run(retrain.Config(images=images, module=str(fake_module), output=tmp_path / "out",
                                        epochs=20, image_size=32, validation_split=0.2, test_split=0.4))
    return result.run_dir / "report.html", LABELS


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_report_opens_cleanly_in_chromium(real_report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install .[test])")
    page_file, labels = real_report
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page()
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url[:80]}"))
        page.goto(page_file.as_uri(), wait_until="load")
        pictures = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt])")
        text = page.inner_text("body")
        browser.close()
    assert errors == []
    assert len(pictures) >= 3  # both plots and at least one thumbnail of a red image filed under blue
    assert all(complete and width > 0 for complete, width, _ in pictures), pictures
    assert all(label in text for label in labels)
