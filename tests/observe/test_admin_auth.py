"""The admin routes take exactly `Authorization: Bearer <token>`."""

from __future__ import annotations

import httpx

from stackmedic.observe import Diagnostics, ObserveApp
from stackmedic.resilience import BreakerRegistry
from tests.app.servers import serve

TOKEN = "s3cret-token"


def test_only_the_bearer_scheme_carries_the_admin_token() -> None:
    """A bare token or another scheme is a 401; the scheme's case does not matter."""
    registry = BreakerRegistry()
    registry.breaker("payments")
    diagnostics = Diagnostics()
    diagnostics.add_breakers(registry)
    url = "/admin/breakers/payments/reset"
    with serve(ObserveApp(diagnostics=diagnostics, admin_token=TOKEN)) as app, \
            httpx.Client(base_url=app.url, timeout=10) as client:
        statuses = {header: client.post(url, headers={"Authorization": header}).status_code
                    for header in (TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}",
                                   f"Bearer {TOKEN}", f"bearer {TOKEN}")}
    assert statuses == {TOKEN: 401, f"Basic {TOKEN}": 401, f"Bearer{TOKEN}": 401,
                        f"Bearer {TOKEN}": 200, f"bearer {TOKEN}": 200}
