"""The command as a user runs it: exit status, messages without tracebacks, help, schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.specs import LAB, lab_data, write_spec


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bootpack", *args], capture_output=True, text=True)


def test_validate_ok(tmp_path: Path) -> None:
    result = run("validate", str(write_spec(tmp_path, LAB)))
    assert result.returncode == 0, result.stderr
    assert "ok: bundle lab 1.0.0" in result.stdout


def test_bad_spec_exits_2_with_the_culprit_and_no_traceback(tmp_path: Path) -> None:
    data = lab_data()
    data["hosts"][0]["mac"] = "zz:..:00:00:00:00"
    result = run("validate", str(write_spec(tmp_path, data)))
    assert result.returncode == 2
    assert "hosts[0].mac: 'zz:..:00:00:00:00' is not a MAC address" in result.stderr
    assert "Traceback" not in result.stderr


def test_toml_syntax_error_exits_2_with_position(tmp_path: Path) -> None:
    path = write_spec(tmp_path, LAB.replace("[menu]", "[menu"))
    result = run("build", str(path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"{path}:13:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tar.gz").exists()


def test_schema_is_json_schema_of_the_spec() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Spec"
    assert {"schema", "bundle", "server", "dhcp", "menu", "images", "entries", "hosts"} <= set(
        schema["properties"])
    assert "Host" in schema["$defs"]


def test_help_explains_each_command() -> None:
    top = run("--help").stdout
    for command in ("validate", "build", "schema"):
        assert command in top
    assert "--output" in run("build", "--help").stdout
    assert run("build").returncode == 2  # argparse usage error


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "in", LAB)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run("build", str(spec), "--output", str(blocker / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(blocker) in result.stderr
