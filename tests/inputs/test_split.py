"""The train / validation / test split: stable under added images and moved folders, grouped by _nohash_."""
from __future__ import annotations

import csv
import logging
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_data import colour_set, write_images
from retrain.inputs import scan
from retrain.inputs.scan import Example
from retrain.inputs.split import group_key, split_examples, write_split_csv


def examples(counts: dict[str, int], names: str = "{label}/{i:04d}.jpg") -> tuple[list[str], list[Example]]:
    labels = sorted(counts)
    found = [Example(None, names.format(label=label, i=i), k)
             for k, label in enumerate(labels) for i in range(counts[label])]
    return labels, found


def where(result) -> dict[str, str]:
    return {e.rel: name for name, items in result.as_dict().items() for e in items}


def test_defaults_are_about_80_10_10_per_class():
    labels, items = examples({"a": 1000, "b": 1000})
    result = split_examples(items, labels)
    for k in range(2):
        sizes = [sum(e.label == k for e in part) for part in (result.train, result.validation, result.test)]
        assert 740 <= sizes[0] <= 860 and 60 <= sizes[1] <= 140 and 60 <= sizes[2] <= 140


def test_adding_images_never_moves_an_existing_one():
    labels, before = examples({"a": 200, "b": 150})
    _, after = examples({"a": 400, "b": 300})
    old, new = where(split_examples(before, labels)), where(split_examples(after, labels))
    assert all(new[rel] == split for rel, split in old.items())


def test_moving_the_folder_keeps_the_split(tmp_path):
    write_images(tmp_path / "here", colour_set(n=20))
    shutil.move(str(tmp_path / "here"), str(tmp_path / "there"))
    write_images(tmp_path / "copy", colour_set(n=20))
    scans = [scan.scan(tmp_path / name, 10**8) for name in ("there", "copy")]
    runs = [where(split_examples(found.examples, found.labels)) for found in scans]
    assert runs[0] == runs[1] and set(runs[0].values()) == {"train", "validation", "test"}


def test_nohash_groups_land_together():
    labels = ["cat", "dog"]
    items = [Example(None, f"{label}/{stem}_nohash_{i}.jpg", k)
             for k, label in enumerate(labels) for stem in (f"s{j}" for j in range(60)) for i in range(3)]
    placed = where(split_examples(items, labels))
    for label in labels:
        for j in range(60):
            assert len({placed[f"{label}/s{j}_nohash_{i}.jpg"] for i in range(3)}) == 1
    assert set(placed.values()) == {"train", "validation", "test"}


def test_group_key_cuts_the_name_before_nohash_and_keeps_the_folder():
    assert group_key("cat/sub/cat1_nohash_a.jpg") == group_key("cat/sub/cat1_nohash_b.jpg") == "cat/sub/cat1"
    assert group_key("cat/other/cat1_nohash_a.jpg") != group_key("cat/sub/cat1_nohash_a.jpg")
    assert group_key("cat/plain.jpg") == "cat/plain.jpg"  # an ordinary name hashes as it is


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_small_classes_keep_a_training_then_a_validation_then_a_test_image(n):
    labels, items = examples({"a": n, "b": 50})
    result = split_examples(items, labels)
    sizes = [sum(e.label == 0 for e in part) for part in (result.train, result.validation, result.test)]
    assert sizes[0] >= 1 and sum(sizes) == n
    assert sizes[1] >= (1 if n >= 2 else 0) and sizes[2] >= (1 if n >= 3 else 0)


def test_a_class_too_small_for_a_test_image_is_named(caplog):
    labels, items = examples({"tiny": 2, "big": 50})
    with caplog.at_level(logging.WARNING, logger="retrain.inputs.split"):
        split_examples(items, labels)
    assert any("tiny" in r.getMessage() and "test" in r.getMessage() for r in caplog.records)
    assert not any("big" in r.getMessage() for r in caplog.records)


def test_test_split_zero_turns_the_test_set_off(caplog):
    labels, items = examples({"a": 100, "b": 3})
    with caplog.at_level(logging.WARNING):
        result = split_examples(items, labels, validation_split=0.2, test_split=0)
    assert result.test == [] and len(result.validation) >= 15 and not caplog.records


def test_split_csv_lists_every_image_once(tmp_path):
    labels, items = examples({'say "hi", <b>': 20, "naïve": 20}, names="{label}/sub/{i}.png")
    result = split_examples(items, labels)
    path = write_split_csv(tmp_path / "split.csv", result.as_dict(), labels)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "class", "split"]
    assert sorted(r[0] for r in rows[1:]) == sorted(e.rel for e in items)
    assert all(where(result)[p] == s and p.startswith(c + "/") for p, c, s in rows[1:])
    assert [p.name for p in tmp_path.iterdir()] == ["split.csv"]  # no temporary file left behind


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=2, max_size=5), st.sampled_from([0.05, 0.1, 0.3]),
       st.sampled_from([0.0, 0.1, 0.3]))
def test_every_image_once_and_the_minimums_hold(sizes, validation, test):
    labels, items = examples({f"c{i}": n for i, n in enumerate(sizes)})
    result = split_examples(items, labels, validation_split=validation, test_split=test)
    assert sorted(where(result)) == sorted(e.rel for e in items)
    for k, n in enumerate(sizes):
        counts = [sum(e.label == k for e in part) for part in (result.train, result.validation, result.test)]
        assert counts[0] >= 1 and counts[1] >= min(1, n - 1)
        assert counts[2] >= (1 if n >= 3 and test > 0 else 0) and (test > 0 or counts[2] == 0)
