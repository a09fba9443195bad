"""Schemathesis against the app's own OpenAPI schema, as two users, with every check it has.

Cases come from the schema's Hypothesis strategies, valid (positive) and invalid (negative)
ones, for every operation under /api. Each goes out as one of two users in turn; both own
notes, so that generated ids hit their own notes and the other's. ``call_and_validate`` runs
every check Schemathesis has (none is excluded). The examples are bounded (``MAX_EXAMPLES``)
so that the three backends together take about a minute.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from notes import Settings, create_app

#: Examples per generation mode, drawn over all operations; raise it for a deeper run.
MAX_EXAMPLES = 150

#: Every check, with their defaults, but two allowances. A listing's `cursor` is an opaque
#: token, so a made-up one (schema-valid: any string) is rightly a 400, as are the
#: combinations the schema cannot express (cursor with offset, relevance without q). And
#: `If-Match` is any string to the schema, but only the note's current ETag (or *) lets a
#: write through: a made-up one is rightly a 412.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path": "/api/notes",
                "include-method": "GET",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "3xx", "400", "401", "404", "429"]
                    }
                },
            },
            *(
                {
                    "include-path": "/api/notes/{note_id}",
                    "include-method": method,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [
                                "2xx",
                                "3xx",
                                "401",
                                "403",
                                "404",
                                "409",
                                "412",
                                "429",
                                "5xx",
                            ]
                        }
                    },
                }
                for method in ("PUT", "PATCH", "DELETE")
            ),
        ]
    }
)

USERS = (
    ("schema-a@example.org", "password of user a"),
    ("schema-b@example.org", "password of user b"),
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_conforms_to_its_schema(settings: Settings, mode: GenerationMode) -> None:
    """Every check Schemathesis offers passes, for requests made as either user."""
    # Typed Any: Schemathesis annotates ASGI apps with plain dicts where Starlette has mappings.
    app: Any = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG).include(
        path_regex="^/api/"
    )
    headers: list[dict[str, str]] = []
    try:
        with asgi.get_client(app) as client:
            for email, password in USERS:
                registered = client.post(
                    "/api/auth/register", json={"email": email, "password": password}
                )
                assert registered.status_code == 201, registered.text
                login = {"username": email, "password": password}
                token = client.post("/api/auth/token", data=login).json()["access_token"]
                bearer = {"Authorization": f"Bearer {token}"}
                headers.append(bearer)
                for index in range(3):
                    note = {"title": f"note {index} of {email}", "tags": ["shared"]}
                    assert client.post("/api/notes", json=note, headers=bearer).status_code == 201
        users = itertools.cycle(headers)

        @given(case=schema.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=next(users))

        run()
    finally:
        # The lifespan runs in Schemathesis' own event loop thread: end it (disconnecting).
        asgi.shutdown_lifespans()
