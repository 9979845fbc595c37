"""The HTTP side: TF Serving's REST routes on a Starlette app, the page at `/`, body limit, request log.

Routes, as tensorflow_serving/model_servers/http_rest_api_util.cc matches them:
    GET  /v1/models/NAME[/versions/N]            model status
    GET  /v1/models/NAME[/versions/N]/metadata   signature defs
    POST /v1/models/NAME[/versions/N]:predict    row ("instances") or columnar ("inputs")
    POST /v1/models/NAME[/versions/N]:classify   "examples" (tf.train.Example features as JSON)
Every refusal is {"error": text} with TF Serving's HTTP code (400 bad request, 404 unknown model or
version); a body over the limit is a 413. Answers carry X-Model-Name and X-Model-Version headers
(the page shows which version answered; TF Serving's JSON has no room for it).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import io
import json
import logging
import os
import re
import time
import urllib.parse

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from retrain.errors import reason
from retrain.serve import page, rest
from retrain.serve.rest import RestError
from retrain.serve.store import DEFAULT_SIGNATURE, Store

log = logging.getLogger(__name__)

_PREDICT = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)")
_STATUS = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(?:/(metadata))?")
_CLASSIFY_INPUT, _CLASSES, _SCORES = "inputs", "classes", "scores"
# Threads for a request's work off the event loop (JSON, base64, answers; a model load). Starlette's own
# pool is not used: its idle threads (up to 40) keep their last call's arguments and result, so each held
# a photo request's body and decoded bytes (~14 MB, seen with memray) and the server grew each time a
# burst woke one more thread. These threads drop a call's objects as soon as it returns.
REQUEST_THREADS = max(4, 2 * (os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 2**20  # a larger request body is answered 413
    max_pixels: int = 50_000_000  # width x height of any image in a request (read from its header)
    log_requests: bool = False  # one INFO line per request


def _json(answer: dict, status: int = 200, version=None) -> Response:
    headers = {} if version is None else {"X-Model-Name": version[0], "X-Model-Version": str(version[1])}
    return Response(json.dumps(answer, ensure_ascii=False, indent=1), status, headers, "application/json")


def _error(error: RestError) -> Response:
    return _json({"error": str(error)}, error.status)


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The body, or _TooLarge once it passes `limit` (the rest is read and dropped, so the client,
    still sending, gets the answer instead of a reset connection)."""
    declared = request.headers.get("content-length", "")
    chunks, size, too_large = [], 0, declared.isdigit() and int(declared) > limit
    async for chunk in request.stream():
        size += len(chunk)
        too_large = too_large or size > limit
        if not too_large:
            chunks.append(chunk)
    if too_large:
        raise _TooLarge(f"Request body of {max(size, int(declared or 0))} bytes is over the limit of {limit} "
                        "bytes (--max-body-mb)")
    return b"".join(chunks)


def pixel_check(max_pixels: int):
    """A check for every decoded b64 value: an image whose header declares more than max_pixels is refused
    before anything decodes it (a decompression bomb costs a header read). Non-images pass: the graph
    judges them."""
    def check(data: bytes) -> None:
        try:
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                pixels, size = image.size[0] * image.size[1], "{} x {}".format(*image.size)
        except Image.DecompressionBombError:  # Pillow's own bound: over twice Image.MAX_IMAGE_PIXELS
            pixels, size = 2 * Image.MAX_IMAGE_PIXELS + 1, f"more than {2 * Image.MAX_IMAGE_PIXELS}"
        except Exception:  # noqa: BLE001 (not an image Pillow knows: the served graph decides)
            return
        if pixels > max_pixels:
            raise RestError(f"image of {size} pixels is over --max-pixels {max_pixels}")
    return check


def _version(match_group: str | None) -> int | None:
    return None if match_group is None else int(match_group)


def create_app(store: Store, limits: Limits = Limits()) -> Starlette:
    """The ASGI app serving `store`."""
    check = pixel_check(limits.max_pixels)
    pool = concurrent.futures.ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="request")

    async def off_loop(function, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))

    async def index(request: Request) -> Response:
        return HTMLResponse(page.html_page(store.name))

    async def models(request: Request) -> Response:
        path = request.url.path
        try:
            if request.method == "POST" and (match := _PREDICT.fullmatch(path)):
                body = await _body(request, limits.max_body_bytes)
                name, number, method = urllib.parse.unquote(match[1]), _version(match[2]), match[3].lower()
                if method == "regress":
                    raise RestError("Regress is not supported by retrain serve (its models classify)", 501)
                version = await off_loop(store.get, name, number)
                run = _predict if method == "predict" else _classify
                answer = await run(version, body, check, off_loop)
                return _json(answer, version=(store.name, version.number))
            if request.method == "GET" and (match := _STATUS.fullmatch(path)):
                if not match[1]:
                    raise RestError("Missing model name in request.")
                name, number = urllib.parse.unquote(match[1]), _version(match[2])
                if match[3]:
                    version = await off_loop(store.get, name, number)
                    return _json(_metadata(store.name, version), version=(store.name, version.number))
                if name != store.name:
                    raise RestError(f"Could not find any versions of model {name}", 404)
                return _json(_status(await off_loop(store.versions, number)))
            raise RestError(f"Malformed request: {request.method} {path}")
        except RestError as error:
            return _error(error)
        except _TooLarge as error:
            return _error(RestError(str(error), 413))

    app = Starlette(routes=[Route("/", index), Route("/v1/{rest:path}", models, methods=["GET", "POST"])])
    if not limits.log_requests:
        return app

    async def logged(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        start, status = time.perf_counter(), [0]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0], 1e3 * (time.perf_counter() - start))
    return logged


async def _call(version, signature: str, arrays: dict) -> dict:
    """The signature's outputs, through the version's batcher; a graph refusal is a 400 with its op's text."""
    try:
        return await asyncio.wrap_future(version.call(signature, arrays))
    except tf.errors.InvalidArgumentError as error:
        raise RestError(reason(error)) from None
    except (ValueError, TypeError) as error:  # a tensor that does not fit the signature's spec
        raise RestError(reason(error)) from None


async def _predict(version, body: bytes, check, off_loop) -> dict:
    def inputs():
        document = rest.parse(body)
        signature = rest.signature_name(document) or DEFAULT_SIGNATURE
        if signature not in version.signature_defs:
            raise RestError(f'Serving signature name: "{signature}" not found in signature def')
        arrays, row = rest.predict_inputs(document, version.input_specs(signature), check)
        return signature, arrays, row

    signature, arrays, row = await off_loop(inputs)
    outputs = await _call(version, signature, arrays)
    return await off_loop(rest.predict_answer, outputs, row)


def _classify_signature(version, signature: str):
    """The checks of TF Serving's PreProcessClassification (without --enable_signature_method_name_check)."""
    if signature not in version.signature_defs:
        raise RestError(f"No signature was found with the name: {signature}")
    definition = version.signature_defs[signature]
    if len(definition.inputs) != 1:
        raise RestError("Expected one input Tensor.")
    if len(definition.outputs) not in (1, 2):
        raise RestError(f"Expected one or two output Tensors, found {len(definition.outputs)}")
    if _CLASSIFY_INPUT not in definition.inputs:
        raise RestError(f"No classification inputs found in SignatureDef: {signature}")
    if _CLASSES not in definition.outputs and _SCORES not in definition.outputs:
        raise RestError(f'Expected classification signature outputs to contain at least one of "{_CLASSES}" '
                        f'or "{_SCORES}". Signature was: {signature}')


async def _classify(version, body: bytes, check, off_loop) -> dict:
    def inputs():
        document = rest.parse(body)
        signature = rest.signature_name(document) or DEFAULT_SIGNATURE
        _classify_signature(version, signature)
        examples = rest.classify_examples(document, check)
        serialized = np.empty(len(examples), object)
        serialized[:] = examples
        return signature, serialized

    signature, serialized = await off_loop(inputs)
    outputs = await _call(version, signature, {_CLASSIFY_INPUT: serialized})
    return rest.classify_answer(outputs.get(_CLASSES), outputs.get(_SCORES))


def _status(numbers: list[int]) -> dict:
    """GetModelStatusResponse as TF Serving prints it (every field, proto JSON names)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for number in numbers:
        status = response.model_version_status.add(version=number,
                                                   state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        status.status.SetInParent()  # error_code OK, as TF Serving reports a healthy version
    return json_format.MessageToDict(response, always_print_fields_with_no_presence=True)


def _metadata(name: str, version) -> dict:
    """GetModelMetadataResponse as TF Serving prints it: the model spec, then the SignatureDefMap."""
    spec = model_pb2.ModelSpec(name=name)
    spec.version.value = version.number
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in version.signature_defs.items():
        signatures.signature_def[key].CopyFrom(definition)
    options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
    return {"model_spec": json_format.MessageToDict(spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signatures, **options)}}
