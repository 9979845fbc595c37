"""Shared fixtures only; what they are made from lives in tests/helpers (on the path via setup.cfg)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from fake_data import colour_set, random_label_set, save_fake_module, write_images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def fake_module(tmp_path_factory) -> Path:
    """Path of a fake feature-vector SavedModel that takes any image size."""
    return save_fake_module(tmp_path_factory.mktemp("fake_module") / "module")


@pytest.fixture(scope="session")
def fixed_module(tmp_path_factory) -> Path:
    """A fake module whose signature fixes the input at 32x32."""
    return save_fake_module(tmp_path_factory.mktemp("fixed_module") / "module", image_size=32)


@pytest.fixture
def colour_images(tmp_path) -> Path:
    return write_images(tmp_path / "colours", colour_set())


@pytest.fixture
def random_images(tmp_path) -> Path:
    return write_images(tmp_path / "random", random_label_set())


@pytest.fixture(scope="session", autouse=True)
def _shared_module_dir(tmp_path_factory):
    """Built modules (the bundled default takes seconds to build) are shared by the whole session."""
    os.environ["RETRAIN_MODULE_DIR"] = str(tmp_path_factory.mktemp("module-dir"))
    yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Keep every cache a test writes inside its own temporary folder."""
    monkeypatch.setenv("RETRAIN_CACHE_HOME", str(tmp_path / "cache-home"))


@pytest.fixture(scope="session")
def serving_export(fake_module, tmp_path_factory):
    """One export (version 1) and its sample files, shared by the export, serving and predict tests."""
    from serving_fixture import build_serving_export

    return build_serving_export(fake_module, tmp_path_factory.mktemp("serving"))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty TF-Hub cache of this test's own."""
    cache = tmp_path / "tfhub"
    cache.mkdir()
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def no_network(monkeypatch):
    """Name lookups fail at once, as on a machine without network (no real DNS query is made)."""
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
