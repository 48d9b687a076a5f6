"""Schema-driven fuzzing of the REST API: schemathesis generates requests from the app's own OpenAPI
document (valid and invalid ones, coverage cases, edge values) and sends them to the real app over ASGI.

Every response must be declared by the schema (status code, content type, headers, body shape), and
nothing may answer 5xx. The app runs in loopback mode (no API keys) with the rate limits off, in a
data folder of its own. No request reaches the model: the fuzzer cannot learn a document or session
id (they are random UUIDs), so plans, sessions, questions and batches end at validation or 404.

This is the fast part, run by CI (DOCQA_FUZZ_EXAMPLES, default 25 per operation); the long run is
`python -m bench.fuzz_api --examples 500`, which runs this same test and writes bench/results/fuzz_api.json.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from litestar.testing import TestClient
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from docqa.settings import Settings
from docqa.web.app import create_app
from tests.support import LOOPBACK

EXAMPLES = int(os.environ.get("DOCQA_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("DOCQA_FUZZ_SEED", "20251128"))  # fixed in CI; the long run picks its own

# What the domain answers to requests the schema allows but the use case refuses: 422 with a sentence
# (no document chosen, an unknown model, an upload that is not a document), 413/415 for uploads, 404 for
# ids that do not exist. A 400 or a 5xx for schema-valid data is still a failure.
ACCEPTED_FOR_VALID_DATA = ["2xx", "401", "403", "404", "409", "413", "415", "422", "429", "503", "507"]

CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": EXAMPLES},
    "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_FOR_VALID_DATA}},
    "seed": SEED,
})

DATA_DIR = Path(tempfile.gettempdir()) / f"docqa-schema-fuzz-{os.getpid()}"
SETTINGS = Settings(data_dir=DATA_DIR, api_keys=None, rate_uploads="0", rate_questions="0",
                    parse_timeout_s=10.0, parse_memory_bytes=1024**3)
APP = create_app(SETTINGS)
# The document the app serves at /schema/openapi.json (test_served_schema_is_the_fuzzed_one checks it);
# built without a request so that collecting this module starts nothing.
SPEC: dict[str, Any] = APP.openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(SPEC, config=CONFIG)
schema.app = APP

# Outcomes per operation, read by bench/fuzz_api.py after a long run.
STATS: dict[str, dict[str, Any]] = {}


def record(label: str, status: int, elapsed: float, case: Any) -> None:
    entry = STATS.setdefault(label, {"cases": 0, "statuses": Counter(), "slowest_s": 0.0, "slowest_case": ""})
    entry["cases"] += 1
    entry["statuses"][str(status)] += 1
    if elapsed > entry["slowest_s"]:
        entry["slowest_s"] = round(elapsed, 4)
        entry["slowest_case"] = case.as_curl_command()[:500]


@pytest.fixture(scope="module", autouse=True)
def _app_lifespan() -> Iterator[None]:
    """schemathesis starts the app's lifespan at its first request; stop it and remove its data here."""
    yield
    asgi.shutdown_lifespans()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                            HealthCheck.data_too_large])
def test_api_answers_as_its_schema_says(case):
    started = time.perf_counter()
    response = case.call(base_url=LOOPBACK, timeout=30)
    record(case.operation.label, response.status_code, time.perf_counter() - started, case)
    # A multipart form carries every field as text: a "boolean" or "integer" password is a string on the wire,
    # so schemathesis' negative cases of field types are not negative there.
    text_only = case.media_type == "multipart/form-data"
    case.validate_response(response, excluded_checks=[negative_data_rejection] if text_only else [])
    # The same request as a hostile client would send it (one class per case, chosen by the case):
    # a foreign Host (DNS rebinding), another site's page, a body that is not JSON.
    name, headers, expected = hostile_variant(case)
    if name and response.status_code != 405:  # a method no route takes ends at the router, before any check
        started = time.perf_counter()
        response = case.call(base_url=LOOPBACK, headers=headers, timeout=30)
        record(f"{case.operation.label} [{name}]", response.status_code, time.perf_counter() - started, case)
        assert response.status_code == expected, (name, response.status_code, response.text[:300])
        case.validate_response(response, excluded_checks=[positive_data_acceptance])


def hostile_variant(case: Any) -> tuple[str, dict[str, str], int]:
    method = str(getattr(case, "method", None) or case.operation.method).upper()  # negative cases change it
    classes = [("foreign host", {"Host": "rebind.example:8000"}, 400)]
    if method not in ("GET", "HEAD", "OPTIONS"):
        classes.append(("cross-site", {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403))
    if case.media_type == "application/json" and method not in ("GET", "HEAD", "OPTIONS"):  # OPTIONS: no body read
        classes.append(("text/plain body", {"Content-Type": "text/plain"}, 415))
    index = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode()) % (len(classes) + 1)
    return classes[index] if index < len(classes) else ("", {}, 0)


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "0123456789abcdef0123456789abcdef", path)


BODY_OPERATIONS = [(m.upper(), path) for path, ops in SPEC["paths"].items() for m, op in ops.items()
                   if "application/json" in op.get("requestBody", {}).get("content", {})]
ID_OPERATIONS = [(m.upper(), path) for path, ops in SPEC["paths"].items() for m in ops if "{" in path]


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz-hostile"), api_keys=None, rate_uploads="0",
                        rate_questions="0")
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        yield client


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
def test_deep_json_and_non_numbers_are_4xx(hostile_client: TestClient, method: str, path: str) -> None:
    """JSON nested far past the decoder's depth (a 500 before) and NaN/Infinity strings where numbers go."""
    client = hostile_client
    deep = '{"document_ids": ' + "[" * 20_000 + "]" * 20_000 + "}"
    r = client.request(method, _filled(path), content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"], r.text[:300]
    takes_numbers = path.endswith("/questions") or path == "/api/batches"
    for value in ("NaN", "Infinity", "-Infinity", 1e300) if takes_numbers else ():
        body = {"document_ids": ["x"], "questions": ["q"], "question": "q",
                "sampling": {"top_k": value, "seed": value, "top_p": value}}
        r = client.request(method, _filled(path), json=body)
        assert r.status_code == 422 and r.json()["detail"], (value, r.text[:300])


@pytest.mark.parametrize(("method", "path"), ID_OPERATIONS)
def test_huge_ids_are_refused_without_echo(hostile_client: TestClient, method: str, path: str) -> None:
    client = hostile_client
    r = client.request(method, re.sub(r"\{[^}]+\}", "f" * 20_000, path),
                       **({"json": {"question": "q"}} if method == "POST" else {}))
    assert r.status_code in (404, 422) and len(r.content) < 600, (r.status_code, len(r.content))
    if "sections" in path:
        r = client.get(_filled(path) + "?offset=99999999999999999999999")
        assert r.status_code == 422, r.text[:300]


def test_served_schema_is_the_fuzzed_one(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", api_keys=None)), base_url=LOOPBACK) as client:
        served = client.get("/schema/openapi.json").json()
    assert served["paths"].keys() == SPEC["paths"].keys()
    assert all(path.startswith("/api/") for path in served["paths"])  # not the /schema pages themselves
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            assert set(served["paths"][path][method]["responses"]) == set(op["responses"]), (method, path)
    # every /api operation declares the error shape for what its rules say it can answer
    upload = served["paths"]["/api/documents"]["post"]["responses"]
    assert {"200", "201", "400", "413", "415", "422", "500"} <= set(upload)
    error = upload["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorOut"}
    assert set(served["components"]["schemas"]["ErrorOut"]["required"]) == {"status_code", "detail"}


def test_options_lists_every_method_of_a_path(tmp_path):
    # Litestar 2's automatic OPTIONS handler knew only the first handler of a path (litestar#4169)
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", api_keys=None)), base_url=LOOPBACK) as client:
        assert client.options("/api/documents").headers["allow"] == "GET, OPTIONS, POST"
        assert client.options("/api/sessions/x").headers["allow"] == "DELETE, GET, OPTIONS"
        r = client.request("TRACE", "/api/documents")
        assert r.status_code == 405
        assert set(r.headers["allow"].split(", ")) == {"GET", "OPTIONS", "POST"}
        assert r.json()["status_code"] == 405
