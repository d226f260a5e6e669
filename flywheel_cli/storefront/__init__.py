"""A minimal storefront (search box, result list, add-to-cart buttons) for the demo and tests.

The page is plain HTML, CSS and ES2020 JavaScript under ``static/``. It calls ``GET /search``
and posts impressions, clicks and add-to-carts to ``POST /events`` of the search API named in
the ``config.json`` served next to it, so it runs on its own origin and talks to the API
cross-origin, as a real shop does (the API must list the shop's origin in
``FLYWHEEL_SERVER__CORS_ORIGINS``).
"""

from flywheel_cli.storefront.server import (
    STATIC_DIR,
    serve_storefront,
    storefront_app,
)

__all__ = ["STATIC_DIR", "serve_storefront", "storefront_app"]
