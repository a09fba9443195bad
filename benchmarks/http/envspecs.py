"""The environments of the HTTP benchmark: one for databases 0.9, one for everything else."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
REPO = BENCHMARKS.parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from benchlib.registry import EnvSpec  # noqa: E402

FASTAPI = "0.165.0"
UVICORN = "0.54.0"
HTTPTOOLS = "0.9.0"
SQLALCHEMY = "2.1.9"
ASYNCPG = "0.32.0"
AIOSQLITE = "0.22.1"
DATABASES = "0.9.0"
ORJSON = "3.13.0"
MATPLOTLIB = "3.11.2"

#: Packages every server environment has, at the same versions.
SERVER = (
    f"fastapi=={FASTAPI}",
    f"uvicorn=={UVICORN}",
    f"httptools=={HTTPTOOLS}",
    f"sqlalchemy[asyncio]=={SQLALCHEMY}",
    f"asyncpg=={ASYNCPG}",
    f"aiosqlite=={AIOSQLITE}",
)

#: databases 0.9.0 and its drivers: the tutorial app's original library.
DATABASES_ENV = EnvSpec(name="http-databases09", requirements=(*SERVER, f"databases=={DATABASES}"))

#: aiodatabases (editable, with the notes service), orjson for Starlette, matplotlib for plots.
MAIN_ENV = EnvSpec(
    name="http-main",
    requirements=(*SERVER, f"orjson=={ORJSON}", f"matplotlib=={MATPLOTLIB}"),
    editable=(".[notes,postgresql]",),
)
