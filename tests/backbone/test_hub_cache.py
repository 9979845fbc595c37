"""TF-Hub handles offline: a download without network fails in one line, without waiting on the network."""
from __future__ import annotations

import socket
import threading

import pytest

from retrain.backbone import hub_cache, resolve
from retrain.errors import RetrainError

MOBILENET = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"


pytestmark = pytest.mark.usefixtures("hub_cache")  # every test here gets an empty TF-Hub cache


@pytest.mark.parametrize("handle", [MOBILENET, "mobilenet_v2_100_224",
                                    "google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2"])
def test_a_download_without_network_fails_in_one_line(handle, no_network):
    with pytest.raises(RetrainError) as error:
        resolve.resolve(handle)
    message = str(error.value)
    assert "\n" not in message and handle in message and "TFHUB_CACHE_DIR" in message
    assert "local SavedModel path" in message and "Name or service not known" in message


def test_a_network_that_never_answers_is_cut_off(monkeypatch):
    released = threading.Event()

    def hang(*args, **kwargs):  # a name server behind a firewall that drops packets
        released.wait()
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "getaddrinfo", hang)
    monkeypatch.setattr(hub_cache, "CONNECT_TIMEOUT_S", 0.05)
    try:
        with pytest.raises(RetrainError, match=r"no answer from tfhub.dev within 0.05 s"):
            resolve.resolve(MOBILENET)
    finally:  # let the probe thread end with this test
        released.set()
        for thread in threading.enumerate():
            if thread.name == "retrain-network-probe":
                thread.join()


def test_the_probe_goes_to_the_proxy_when_one_is_set(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    assert hub_cache._address(MOBILENET) == ("proxy.internal", 3128)
    monkeypatch.delenv("https_proxy")
    assert hub_cache._address(MOBILENET) == ("tfhub.dev", 443)


def test_kaggle_handles_and_urls_map_to_download_urls():
    assert hub_cache.as_url("google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2") == (
        "https://www.kaggle.com/models/google/mobilenet-v2/tensorFlow2/100-224-feature-vector/2")
    assert hub_cache.as_url(MOBILENET) == MOBILENET and hub_cache.as_url("not/a/handle") is None
