"""A TF Serving REST client written from its documentation (https://www.tensorflow.org/tfx/serving/api_rest),
and a `retrain serve` process on a loopback port for tests and bench/serve_load.py.

The client knows nothing of retrain: request bodies are the documented ones, images travel as
{"b64": ...}, and every answer is (HTTP status, parsed JSON body, headers).
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # tests/helpers/ -> the checkout


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


class Client:
    """One keep-alive HTTP/1.1 connection to a model server (not thread-safe: one per thread)."""

    def __init__(self, url: str, model: str = "model"):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.model = parts.hostname, parts.port, model
        self._connection = http.client.HTTPConnection(self.host, self.port, timeout=300)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, dict]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):  # a kept-alive connection the server closed is opened again, once
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._connection.close()
                if attempt:
                    raise
        answer = json.loads(data) if data else {}
        return response.status, answer, {k.lower(): v for k, v in response.getheaders()}

    def _path(self, version: int | None, suffix: str = "") -> str:
        versions = "" if version is None else f"/versions/{version}"
        return f"/v1/models/{self.model}{versions}{suffix}"

    def status(self, version: int | None = None):
        return self.request("GET", self._path(version))

    def metadata(self, version: int | None = None):
        return self.request("GET", self._path(version, "/metadata"))

    def predict(self, body, version: int | None = None):
        """POST :predict; `body` is a dict (sent as JSON) or raw bytes (sent as they are)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", self._path(version, ":predict"), data)

    def classify(self, body, version: int | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", self._path(version, ":classify"), data)

    def close(self) -> None:
        self._connection.close()


class Server:
    """`python -m retrain serve BASE --port 0 ...` in a subprocess of this checkout; .url once it listens."""

    def __init__(self, base: Path, *args: str, log_path: Path | None = None):
        env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
        self.log_path = log_path
        stderr = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([sys.executable, "-m", "retrain", "serve", str(base), "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=REPO)
        self._stderr = stderr
        self.url = self.process.stdout.readline().decode().strip()  # printed once the port is bound
        if not self.url.startswith("http://"):
            code = self.process.wait()
            raise RuntimeError(f"retrain serve exited {code} before listening; log: {log_path}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.alive():
            self.process.send_signal(signum)
        code = self.process.wait(timeout=120)
        if hasattr(self._stderr, "close"):
            self._stderr.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""
