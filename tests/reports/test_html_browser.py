"""report.html of a real run, opened in headless Chromium: no console errors, every image shown, every class listed.

Uses Debian's chromium (apt-get install chromium) through Playwright for Python; Playwright's own
browsers are never downloaded. Skipped, saying why, when either is missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import retrain
from browser import chromium_page, needs_chromium
from fake_data import colour_set, write_images

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
@needs_chromium
def test_report_opens_cleanly_in_chromium(real_report):
    page_file, labels = real_report
    errors: list[str] = []
    with chromium_page(errors) as page:
        page.goto(page_file.as_uri(), wait_until="load")
        pictures = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt])")
        text = page.inner_text("body")
    assert errors == []
    assert len(pictures) >= 3  # both plots and at least one thumbnail of a red image filed under blue
    assert all(complete and width > 0 for complete, width, _ in pictures), pictures
    assert all(label in text for label in labels)


@pytest.mark.slow
@needs_chromium
def test_data_section_shows_each_image_beside_its_copy(fake_module, tmp_path):
    colours = dict(zip(LABELS, colour_set(n=12).values()))
    colours[LABELS[0]] = colours[LABELS[0]] + [(222, 28, 33)]  # a red image filed under blue: a label error
    images = write_images(tmp_path / "images", colours)
    (images / LABELS[1] / "copy.png").write_bytes((images / LABELS[2] / "001.png").read_bytes())
    from retrain import pipeline

    found = pipeline.check(retrain.Config(images=images, module=str(fake_module), output=tmp_path / "out",
                                          image_size=32))
    errors: list[str] = []
    with chromium_page(errors) as page:
        page.goto((found.run_dir / "report.html").as_uri(), wait_until="load")
        pictures = page.evaluate("Array.from(document.querySelectorAll('#data img'), "
                                 "i => [i.complete, i.naturalWidth, i.alt, i.getBoundingClientRect().top])")
        text = page.inner_text("#data")
    assert errors == []
    assert all(complete and width > 0 for complete, width, _, _ in pictures), pictures
    pair = {alt: top for _, _, alt, top in pictures if alt in (f"{LABELS[1]}/copy.png", f"{LABELS[2]}/001.png")}
    assert len(pair) == 2 and len(set(pair.values())) == 1  # side by side: one row
    assert "Exact duplicates (same bytes): 2" in text and "under two labels" in text
    assert "Likely label errors" in text and f"{LABELS[0]}/012.png" in text
