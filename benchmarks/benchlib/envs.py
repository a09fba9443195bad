"""Create, reuse and describe the per-contender virtual environments."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .registry import EnvSpec

MARKER = ".bench-env.json"
#: Bumped whenever the way environments are built changes, to force a rebuild.
_LAYOUT = 1


class EnvError(RuntimeError):
    """An environment could not be created or its packages could not be installed."""


def env_python(env_dir: Path) -> Path:
    """Return the interpreter of the virtual environment in ``env_dir``."""
    if os.name == "nt":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def _base_python_identity(python: str) -> str:
    """Describe the base interpreter (real path and version) a venv would be built from."""
    real = os.path.realpath(python)
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return f"{real} {out.stdout.strip()}"


def _fingerprint(spec: EnvSpec, repo_root: Path, base: str) -> dict[str, Any]:
    """Return what must match for an existing environment to be reused."""
    editable_hashes: dict[str, str] = {}
    for item in spec.editable:
        path = item.split("[", 1)[0]
        pyproject = (repo_root / path / "pyproject.toml").resolve()
        digest = hashlib.sha256(pyproject.read_bytes()).hexdigest() if pyproject.exists() else ""
        editable_hashes[item] = digest
    return {
        "layout": _LAYOUT,
        "base_python": base,
        "requirements": list(spec.requirements),
        "editable": editable_hashes,
        "repo_root": str(repo_root.resolve()),
    }


def _run_logged(cmd: list[str], timeout: float, what: str) -> None:
    """Run an install step, raising :class:`EnvError` with the output tail when it fails."""
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
        )
    except subprocess.TimeoutExpired:
        raise EnvError(f"{what}: timed out after {timeout:.0f}s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise EnvError(f"{what}: exit code {proc.returncode}: {' '.join(cmd)}\n{tail}")


def ensure_env(
    spec: EnvSpec,
    envs_root: Path,
    repo_root: Path,
    *,
    python: str = sys.executable,
    rebuild: bool = False,
    timeout: float = 900.0,
    log: Any = None,
) -> Path:
    """Return the interpreter of ``spec``'s environment, building it first if needed.

    An environment is reused when its marker file records the same base interpreter,
    requirements and editable projects (including a hash of their ``pyproject.toml``);
    otherwise it is deleted and rebuilt. The marker is written last, so an interrupted build is
    never mistaken for a finished one.

    Raises:
        EnvError: The environment could not be created or a package failed to install.
    """
    env_dir = envs_root / spec.name
    marker = env_dir / MARKER
    try:
        base = _base_python_identity(python)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvError(f"cannot run the base interpreter {python!r}: {exc}") from None
    wanted = _fingerprint(spec, repo_root, base)
    if not rebuild and marker.exists() and env_python(env_dir).exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                return env_python(env_dir)
        except (OSError, ValueError):
            pass
    if log is not None:
        log(f"building environment {env_dir} ...")
    if env_dir.exists():
        shutil.rmtree(env_dir)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    needs_pip = bool(spec.requirements or spec.editable)
    cmd = [python, "-m", "venv"]
    if not needs_pip:
        cmd.append("--without-pip")
    _run_logged([*cmd, str(env_dir)], timeout, f"creating venv {spec.name!r}")
    py = str(env_python(env_dir))
    if needs_pip:
        install = [py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"]
        args: list[str] = list(spec.requirements)
        for item in spec.editable:
            path, bracket, extras = item.partition("[")
            target = str((repo_root / path).resolve()) + (bracket + extras if bracket else "")
            args += ["-e", target]
        _run_logged([*install, *args], timeout, f"installing into {spec.name!r}")
    marker.write_text(json.dumps(wanted, indent=2) + "\n")
    return env_python(env_dir)
