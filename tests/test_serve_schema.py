"""Property-based test of the service against its own OpenAPI schema (schemathesis).

A served keyed ConvMixer runs on 127.0.0.1 (in a thread of this process); schemathesis loads
``/openapi.json`` from it and generates requests for every operation: with the token, without
it, or with a wrong one. Request bodies come from the strategies registered below for the two
media types: real ``.npy`` and safetensors encodings of valid batches (some over the batch
limit), real encodings of wrong dtypes, shapes and non-finite values, valid bodies with bytes
flipped or cut off, and random bytes. Every answer must be no 5xx, a status the operation's
schema documents, of a documented content type, and match the documented body schema.

The examples are bounded (``MAX_EXAMPLES`` per operation and authentication case, derandomised so
every run tests the same requests) to keep this part of the normal test run under ~30 s.
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import safetensors.numpy
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from veilnet import models
from veilnet.keyed import generate_key, public_params
from veilnet.keyed.transform import transform_model
from veilnet.serve import Limits, ServedModel, create_app, local_server
from veilnet.serve.codec import NPY, SAFETENSORS
from veilnet.serve.server import ConnectionLimits

TOKEN = "schema-token-0123456789abcdef"
ITEM = (3, 32, 32)
MAX_BATCH = 4
MAX_EXAMPLES = {"GET /healthz": 10, "GET /v1/info": 15, "POST /v1/predict": 150}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _encode(array: np.ndarray, media: str) -> bytes:
    if media == SAFETENSORS:
        return safetensors.numpy.save({"inputs": array})
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    """A real array: mostly a valid batch (N ≤ MAX_BATCH + 2, so some are over the limit), else a
    wrong dtype, shape or value."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, MAX_BATCH + 2))
    valid = rng.random((n, *ITEM), dtype=np.float32)
    variant = draw(st.sampled_from(["valid"] * 4 + ["float64", "uint8", "float16", "small", "no-batch", "nan", "inf", "scalar"]))
    return {
        "valid": lambda: valid,
        "float64": lambda: valid.astype(np.float64),
        "uint8": lambda: (valid * 255).astype(np.uint8),
        "float16": lambda: valid.astype(np.float16),
        "small": lambda: rng.random((max(n, 1), 3, 16, 16), dtype=np.float32),
        "no-batch": lambda: rng.random(ITEM, dtype=np.float32),
        "nan": lambda: np.full((max(n, 1), *ITEM), np.nan, np.float32),
        "inf": lambda: np.full((max(n, 1), *ITEM), -np.inf, np.float32),
        "scalar": lambda: np.array(0.5, np.float32),
    }[variant]()


def _bodies(media: str) -> st.SearchStrategy[bytes]:
    """Bodies for ``media``: real encodings, the same with bytes flipped (mostly in the header) or
    cut off, and random bytes."""
    real = _arrays().map(lambda a: _encode(a, media))

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        body = bytearray(draw(real))
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, min(len(body), 160) - 1))
            body[pos] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        return bytes(body)

    return st.one_of(real, real, mutated(), st.binary(max_size=600))


schemathesis.openapi.media_type(NPY, _bodies(NPY))
schemathesis.openapi.media_type(SAFETENSORS, _bodies(SAFETENSORS))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    """A keyed ConvMixer served on loopback with small limits; yields its URL."""
    root = tmp_path_factory.mktemp("serve-schema")
    torch.manual_seed(0)
    plain = models.create("convmixer", dim=16, depth=1, kernel_size=3, patch_size=4, num_classes=10).eval()
    key = generate_key("block", 4, 3, 32)
    models.save(transform_model(plain, key), root / "served", extra={"keyed": public_params(key)})
    app = create_app(ServedModel.load(root / "served"), tokens=[TOKEN], limits=Limits(max_body_bytes=64 << 10, max_batch=MAX_BATCH))
    with local_server(app, connections=ConnectionLimits(read_timeout_s=5)) as url:
        yield url


def test_every_answer_is_documented_and_none_is_a_server_error(service: str) -> None:
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json")
    seen: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.label for op in operations) == sorted(MAX_EXAMPLES)
    # positive cases with the token, without one, with a wrong one; negative cases (schemathesis
    # breaks what the schema asks for, e.g. the Authorization header) with the token
    runs = [(GenerationMode.POSITIVE, TOKEN), (GenerationMode.POSITIVE, None), (GenerationMode.POSITIVE, "wrong-" + TOKEN), (GenerationMode.NEGATIVE, TOKEN)]
    for operation in operations:
        for mode, token in runs:
            examples = MAX_EXAMPLES[operation.label] if (mode, token) == (GenerationMode.POSITIVE, TOKEN) else 10

            @settings(max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
                seen[(operation.label, response.status_code)] += 1

            try:
                check()
            except Unsatisfiable:  # an operation without inputs (GET /healthz) has no negative cases
                assert mode == GenerationMode.NEGATIVE and operation.label == "GET /healthz"
    predict = {status for (label, status) in seen if label == "POST /v1/predict"}
    # the bodies reached past authentication and parsing: answers, and each kind of refusal
    assert {200, 400, 401, 413, 422} <= predict, seen
    assert seen[("GET /v1/info", 200)] and seen[("GET /v1/info", 401)] and seen[("GET /healthz", 200)], seen
