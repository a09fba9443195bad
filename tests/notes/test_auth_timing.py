"""Login timing: an unknown email costs the same time as a wrong password."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest
from fastapi import FastAPI

from notes import Settings, create_app

#: Interleaved attempts of each kind, and the largest gap allowed between their medians.
ATTEMPTS = 300
MAX_GAP_SECONDS = 0.005


@pytest.mark.timeout(300)
async def test_unknown_email_and_wrong_password_take_the_same_time(settings: Settings) -> None:
    """300 interleaved attempts of each: same answer, and medians within 5 ms."""
    # Throttling would answer both kinds fast with 429 after 10 failures: raised here.
    app: FastAPI = create_app(settings.model_copy(update={"login_max_failures": 10**6}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            account = {"email": "known@example.org", "password": "the right password"}
            assert (await http.post("/api/auth/register", json=account)).status_code == 201
            attempts = {
                "unknown": {"username": "unknown@example.org", "password": "the right password"},
                "wrong": {"username": "known@example.org", "password": "a wrong password!"},
            }
            timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
            answers: dict[str, set[tuple[int, str]]] = {"unknown": set(), "wrong": set()}
            for index in range(ATTEMPTS):
                # Alternate which goes first, so that neither always follows the other.
                kinds = ("unknown", "wrong") if index % 2 == 0 else ("wrong", "unknown")
                for kind in kinds:
                    started = time.perf_counter()
                    response = await http.post("/api/auth/token", data=attempts[kind])
                    timings[kind].append(time.perf_counter() - started)
                    answers[kind].add((response.status_code, response.text))
    assert answers["unknown"] == answers["wrong"]
    assert len(answers["wrong"]) == 1
    assert next(iter(answers["wrong"]))[0] == 401
    unknown, wrong = (statistics.median(timings[kind]) for kind in ("unknown", "wrong"))
    assert abs(unknown - wrong) < MAX_GAP_SECONDS, (
        f"median unknown {unknown * 1000:.2f} ms vs wrong password {wrong * 1000:.2f} ms"
    )
