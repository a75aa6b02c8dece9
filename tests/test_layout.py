"""The repository's layout keeps its promises: two programs, one library, no shadowing."""

from __future__ import annotations

import operator
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import wasp

ROOT = Path(__file__).resolve().parent.parent


def test_operator_folder_is_not_a_package_that_hides_the_stdlib() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert Path(operator.__file__).parent == Path(sysconfig.get_paths()["stdlib"])


@pytest.mark.parametrize(
    ("module", "program"),
    [
        ("wasp_operator", "wasp-operator"),
        ("wasp_session", "wasp-session"),
        ("wasp", "wasp"),
    ],
)
def test_programs_start_and_explain_themselves(module: str, program: str) -> None:
    if module == "wasp":
        args = [sys.executable, "-c", "from wasp.cli import main; main(['--help'])"]
    else:
        args = [sys.executable, "-m", module, "--help"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {program}")


def test_installed_version_is_reported() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wasp_session", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"wasp-session {wasp.__version__}"
    assert wasp.__version__ != "0.0.0+unknown"
