"""The command as a user runs it: exit status, messages without tracebacks, help, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


# No traceback, ever: each of issue 9's crashes ends in `bootpack: error: ...` and exit status 2.

def _main_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from bootpack.cli import main

    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("bootpack: error: ") and "Traceback" not in err
    return err


def test_spec_that_is_dev_zero_is_refused_without_reading_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert "/dev/zero: is a character device, not a spec file" in _main_error(capsys, "validate", "/dev/zero")


def test_spec_that_is_a_folder_or_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is a directory, not a spec file" in _main_error(capsys, "validate", str(tmp_path))
    os.mkfifo(tmp_path / "pipe")
    assert "pipe: is a FIFO, not a spec file" in _main_error(capsys, "validate", str(tmp_path / "pipe"))


def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, LAB + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in _main_error(capsys, "validate", str(path))


def test_integer_of_5000_digits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, LAB.replace("timeout = 5", "timeout = " + "9" * 5000))
    assert f"{path}:15: an integer of 5000 digits" in _main_error(capsys, "validate", str(path))
    path = write_spec(tmp_path, LAB.replace("timeout = 5", "timeout = " + "9" * 4000))
    err = _main_error(capsys, "validate", str(path))
    assert "menu.timeout: 99999" in err and "(4000 characters) is out of range" in err and len(err) < 300


def test_spec_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spec.toml"
    path.write_bytes(LAB.replace("Lab", "L\xe4b").encode("latin-1"))
    assert "not UTF-8 text" in _main_error(capsys, "validate", str(path))


@pytest.mark.parametrize("epoch", ["99999999999999999999", "4294967296", "-1", "1e9", "9" * 5000])
def test_source_date_epoch_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, epoch: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    err = _main_error(capsys, "build", str(write_spec(tmp_path / "in", LAB)), "-o", str(tmp_path / "out"))
    assert "SOURCE_DATE_EPOCH=" in err and len(err) < 300
    assert not (tmp_path / "out").exists()


def test_local_entry_naming_an_image_is_refused_by_build(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = lab_data()
    data["entries"].append({"name": "disk", "root": "local", "image": "gone"})
    err = _main_error(capsys, "build", str(write_spec(tmp_path, data)), "-o", str(tmp_path / "out"))
    assert "entries[1].image: root = 'local' boots the local disk and loads no image" in err


def test_misspelt_key_gets_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, LAB.replace("timeout = 5", "timout = 5"))
    assert "menu.timout: unknown key; did you mean 'timeout'?" in _main_error(capsys, "validate", str(path))


@pytest.mark.parametrize("env", [
    {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},  # ASCII: harsher than Latin-1
    {"PYTHONIOENCODING": "iso-8859-1", "PYTHONUTF8": "0"},
])
def test_non_ascii_labels_under_a_narrow_locale(tmp_path: Path, env: dict[str, str]) -> None:
    data = lab_data()
    data["menu"]["title"] = "Läb ☃"
    data["entries"][0]["label"] = "Ωmega kernel"
    path = write_spec(tmp_path / "in", data)
    out = tmp_path / "out"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    result = subprocess.run([sys.executable, "-m", "bootpack", "-q", "build", str(path), "-o", str(out)],
                            capture_output=True, env={**clean, **env})
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    text = (out / "tftpboot/pxelinux.cfg/default").read_text(encoding="utf-8")
    assert "MENU TITLE Läb ☃" in text and "MENU LABEL Ωmega kernel" in text
    # and an error that quotes a non-ASCII value is printed, not a UnicodeEncodeError
    data["hosts"][0]["name"] = "nöde"
    spec = write_spec(tmp_path / "b", data)
    result = subprocess.run([sys.executable, "-m", "bootpack", "validate", str(spec)],
                            capture_output=True, env={**clean, **env})
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"hosts[0].name: 'n" in result.stderr


def test_a_bug_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from bootpack import cli

    def broken(args: object, progress: object) -> int:
        raise KeyError("boom")

    monkeypatch.setattr(cli, "_schema", broken)
    assert cli.main(["schema"]) == 70
    err = capsys.readouterr().err
    assert "bootpack: internal error: KeyError: 'boom'" in err and "BOOTPACK_DEBUG=1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("BOOTPACK_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["schema"])
