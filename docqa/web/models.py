"""/api/models/pull, /api/models/pulls and /api/models/recommend: getting a model and knowing first whether it fits.

Pulling downloads gigabytes into the server's models folder, so it is for whoever may manage models:
anyone in loopback mode (the server only listens on loopback then), else the principals named in
DOCQA_MODEL_MANAGERS; others get 403 with a sentence. GET /api/models/pull says first whether the
caller may (the page shows its Pull buttons only then). A pull is resolved before the answer (an
unknown repository or quantization, offline mode: 404 / 503 at once), then runs in the background:
202 with the pull, whose progress GET /api/models/pulls/{id} reports; once done, its model is in
GET /api/models under its name. The recommendation reads nothing from a hub unless `ref` names a
repository (then only its file list and the first megabytes of one file).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from anyio import to_thread
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from docqa.engine.budget import Memory, probe_memory
from docqa.errors import Forbidden, InvalidRequest
from docqa.pull import Pulls
from docqa.settings import Settings


class PullIn(msgspec.Struct, forbid_unknown_fields=True):
    """`model`: hf:ORG/REPO:QUANT (e.g. hf:Qwen/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M) or hf:ORG/REPO/FILE.gguf."""

    model: Annotated[str, msgspec.Meta(min_length=4, max_length=300)]


def managers(settings: Settings) -> set[str]:
    return {n.strip() for n in (settings.model_managers or "").split(",") if n.strip()}


def may_manage(state: State, principal: str) -> bool:
    """Loopback mode: anyone; with API keys: the principals of DOCQA_MODEL_MANAGERS."""
    return not state.keyring.enabled or principal in managers(state.settings)


def require_manager(state: State, principal: str) -> None:
    if not may_manage(state, principal):
        raise Forbidden(f"{principal!r} may not pull models on this server: the operator lists who may in "
                        "DOCQA_MODEL_MANAGERS. Ask them, or pick a model GET /api/models already offers.")


def parse_bytes(text: str | None) -> int | None:
    """'16G', '16GB', '512M', '17179869184' → bytes (powers of 1,000 for GB, 1,024 for GiB)."""
    if text is None or not text.strip():
        return None
    raw = text.strip().upper().removesuffix("B")
    units = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}
    for suffix in sorted(units, key=len, reverse=True):
        if raw.endswith(suffix):
            number, factor = raw[: -len(suffix)], units[suffix]
            break
    else:
        number, factor = raw, 1
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not an amount of memory: give bytes, or e.g. 16G, 64GB, 512M.") from None
    if value <= 0:
        raise InvalidRequest("The memory to plan for must be more than 0 bytes.")
    return value


def memory_for(settings: Settings, override: int | None) -> Memory:
    """This machine's memory as the planner sees it, or a machine of `override` bytes."""
    if override is not None:
        return Memory(override, override, None, None)
    return probe_memory(settings.memory_budget)


class ModelsController(Controller):
    path = "/api/models"
    tags = ["models"]

    @get("/pull", sync_to_thread=False, summary="Whether this caller may pull models here (the page asks first)")
    def pull_access(self, state: State, principal: NamedDependency[str]) -> dict[str, Any]:
        """`allowed`: POST /api/models/pull would be accepted from this caller; `offline`: the server is in
        offline mode (HF_HUB_OFFLINE), so a pull would be refused with 503; `detail`: why not, as a sentence."""
        from docqa.pull import Hub

        allowed = may_manage(state, principal)
        offline = Hub.from_env(state.pulls.env).offline
        detail = None
        if not allowed:
            detail = ("Pulling models is for whoever manages this server's models: ask them to pull one, or "
                      "choose a model the picker already offers.")
        elif offline:
            detail = "This server is in offline mode (HF_HUB_OFFLINE): it cannot reach the hub to pull a model."
        return {"allowed": allowed and not offline, "offline": offline, "detail": detail}

    @post("/pull", status_code=202, summary="Pull a GGUF model from the Hugging Face Hub by name (model managers)")
    async def pull(self, state: State, principal: NamedDependency[str], data: JSONBody[PullIn]) -> dict[str, Any]:
        """Resolved now (404 unknown repository or quantization, 503 offline, 502 hub unreachable), downloaded in
        the background: poll GET /api/models/pulls/{id} for `status`, `bytes_done` of `bytes_total`,
        `rate_bytes_per_s`, `eta_s`, and, once done, `model` (its name in GET /api/models)."""
        require_manager(state, principal)
        pulls: Pulls = state.pulls
        pull = await to_thread.run_sync(pulls.start, data.model)
        return pull.to_dict()

    @get("/pulls", sync_to_thread=False, summary="Pulls since the server started, newest first (model managers)")
    def pulls(self, state: State, principal: NamedDependency[str]) -> list[dict[str, Any]]:
        require_manager(state, principal)
        return [p.to_dict() for p in state.pulls.list()]

    @get("/pulls/{pull_id:str}", sync_to_thread=False, summary="One pull's progress (model managers)")
    def pull_status(self, state: State, principal: NamedDependency[str], pull_id: FromPath[str]) -> dict[str, Any]:
        require_manager(state, principal)
        return dict(state.pulls.get(pull_id).to_dict())

    @delete("/pulls/{pull_id:str}", status_code=202, sync_to_thread=False,
            summary="Cancel a pull; pulling it again resumes (model managers)")
    def cancel_pull(self, state: State, principal: NamedDependency[str], pull_id: FromPath[str]) -> dict[str, Any]:
        """202 with the pull; it stops at its next chunk (`status` becomes `cancelled`), keeping what arrived."""
        require_manager(state, principal)
        return dict(state.pulls.cancel(pull_id).to_dict())

    @get("/recommend", sync_to_thread=True,
         summary="Which model, quantization and KV cache type read how long a document on this machine")
    def recommend(self, request: Request, state: State,
                  tokens: Annotated[int | None, Parameter(ge=256, le=4_194_304, description="document length")] = None,
                  memory: Annotated[str | None, Parameter(description="plan for a machine of this much memory "
                                                                      "(e.g. 16G) instead of this one")] = None,
                  ref: Annotated[str | None, Parameter(description="hf:ORG/REPO: its quantizations, from the "
                                                                   "hub's copy of the header")] = None,
                  ) -> dict[str, Any]:
        """Each row: `model`, `quant`, `weights_bytes` (`weights_exact` false: estimated), `cache_type`,
        `longest_whole_tokens`, `tokens`, `needed_bytes`, `fits`, `mode`, `available_bytes`, `reading`
        (reading.py's estimate where measured), `pull` (what POST /api/models/pull takes) and `sentence`."""
        from docqa.engine.recommend import recommend
        from docqa.reading import ReadingRates

        if ref:  # the server reaches the hub for it: as pulling, for whoever may manage models
            require_manager(state, str(request.user))
        mem = memory_for(state.settings, parse_bytes(memory))
        return recommend(state.settings, state.registry, mem, tokens, ReadingRates(state.db), ref)
