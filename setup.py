"""Build the optional C speedups; everything else is configured in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "aiodatabases._crecords",
            ["src/aiodatabases/_crecords.c"],
            optional=True,
        ),
        Extension(
            "aiodatabases._csqlite",
            ["src/aiodatabases/_csqlite.c"],
            optional=True,
        ),
    ]
)
