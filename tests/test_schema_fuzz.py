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
import shutil
import tempfile
import time
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

from docqa.settings import Settings
from docqa.web.app import create_app

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
    response = case.call(timeout=30)
    record(case.operation.label, response.status_code, time.perf_counter() - started, case)
    case.validate_response(response)


def test_served_schema_is_the_fuzzed_one(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", api_keys=None))) as client:
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
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", api_keys=None))) as client:
        assert client.options("/api/documents").headers["allow"] == "GET, OPTIONS, POST"
        assert client.options("/api/sessions/x").headers["allow"] == "DELETE, GET, OPTIONS"
        r = client.request("TRACE", "/api/documents")
        assert r.status_code == 405
        assert set(r.headers["allow"].split(", ")) == {"GET", "OPTIONS", "POST"}
        assert r.json()["status_code"] == 405
