"""``flywheel index`` (encode and index a catalog) and ``flywheel serve`` (the search API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel_cli.ui import console, progress_bar
from services.settings import Settings

app = typer.Typer()


@app.command()
def index(
    catalog: Annotated[Path, typer.Option(help="Products file: CSV, JSONL or Parquet.")],
    id_column: Annotated[str | None, typer.Option(help="Column holding product ids.")] = None,
    text_column: Annotated[
        list[str] | None, typer.Option(help="Column(s) with product text; repeatable.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="A registered version (v3) to index with, or a checkpoint ('bundled', a path) "
            "to register as a new version first."
        ),
    ] = None,
) -> None:
    """Encode and index a catalog; on a new home, register the bundled model as v1 production."""
    from services.catalog import load_catalog
    from services.catalog_store import save_products
    from services.indexing import index_products
    from services.registry import ModelRegistry

    settings = Settings()
    registry = ModelRegistry(settings.registry_dir)
    products = load_catalog(catalog, id_column=id_column, text_columns=text_column)
    version = registry.pointers().production
    if model in registry.versions():
        version, model = model, None
    new = model is not None or version is None
    if new:
        # Only registering needs PyTorch; indexing with a registered version runs on ONNX.
        from services.encoding.package import register_pretrained

        card = register_pretrained(registry, model or settings.encoder.model, settings.encoder)
        version = card.version
        console.print(f"registered {card.source!r} as model [bold]{version}[/bold]")
    assert version is not None
    save_products(products, settings.home)
    with progress_bar() as bar:
        task = bar.add_task(f"indexing with {version}", total=len(products))
        idx = index_products(settings, version, products, progress=lambda n: bar.advance(task, n))
        count = idx.count()
        idx.close()
    if new and registry.pointers().production is None:
        registry.set_production(version)
    console.print(
        f"indexed [bold]{count}[/bold] products with {version}; production = "
        f"{registry.pointers().production}. Next: `flywheel serve`."
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Run the search service (encoder_server) under uvicorn."""
    import uvicorn

    from encoder_server.app import create_app

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        log_level="info",
        access_log=False,
    )
