"""The benchmark table and plot generator, on a results folder of the test's own (no benchmark
is run here: they take minutes to hours and report numbers, they are not tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import report, table
from benchmarks.report import Figure


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    return tmp_path / "results"


def test_every_goal_has_a_row_and_unmeasured_ones_say_so(results: Path) -> None:
    report.write("build", [Figure("render and build 1,000 hosts with nfs entries", 0.8, "s",
                                  goal="<= 1 s", before="35 s", met=True, detail="0.7 s CPU")])
    text = table.render_table(report.read_all())
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(table.GOALS) == 7
    assert "| render and build 1,000 hosts with nfs entries | 35 s | <= 1 s | 0.8 s | yes |" in text
    assert sum(table.NOT_MEASURED in row for row in rows) == 6
    assert "Measured on " in text and "build " in text  # the machine and when


def test_the_boot_results_of_the_other_benchmark_fill_their_rows(results: Path) -> None:
    results.mkdir()
    (results / "boot_speed.json").write_text(json.dumps({
        "benchmark": "boot_speed", "taken": "2026-11-22 23:00 UTC", "machine": "2 cores, test",
        "figures": [{"measure": "live entry: power-on to marker, bootpack / seed-style",
                     "value": 0.45, "unit": "x", "goal": "<= 0.5x", "before": "~1.0x",
                     "met": True, "detail": "bootpack 33 s, seed 74 s"},
                    {"measure": "dracut initrd of the example image", "value": 31, "unit": "MB",
                     "goal": "<= 20 MB", "met": False}]}))
    text = table.render_table(report.read_all())
    assert ("| live entry: power-on to marker, bootpack / seed-style | ~1.0x | <= 0.5x | 0.45 x | yes |"
            in text)
    assert "| dracut initrd of the example image | 50 MB | <= 20 MB | 31 MB | no |" in text
    assert "Measured on 2 cores, test: boot_speed 2026-11-22 23:00 UTC." in text


def test_a_pipe_in_a_detail_does_not_break_the_table(results: Path) -> None:
    report.write("x", [Figure("100 clients at once", 0, "failures", detail="tftp | http")])
    assert "tftp \\| http" in table.render_table(report.read_all())


def test_readme_table_is_replaced_between_the_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{table.START}\nold table\n{table.END}\nafter\n")
    assert table.update_readme(readme, "| new |\n")
    assert readme.read_text() == f"# x\n\nbefore\n{table.START}\n| new |\n{table.END}\nafter\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not table.update_readme(plain, "| new |\n")
    assert plain.read_text() == "no markers\n"


def test_plot_draws_one_bar_per_measured_goal(results: Path, tmp_path: Path) -> None:
    report.write("build", [Figure("render and build 1,000 hosts", 0.5, "s", goal="<= 1 s", met=True)])
    report.write("rebuild", [Figure("rebuild with nothing changed", 3.0, "s", goal="<= 2 s",
                                    met=False)])
    png = tmp_path / "docs" / "benchmarks.png"
    assert table.plot(report.read_all(), png) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_goal_named_later_in_a_measure_is_found(results: Path) -> None:
    report.write("boot", [Figure("boot time, ramdisk entry: bootpack / seed-style", 0.55, "x",
                                 goal="<= 0.6x", met=True)])
    assert "| boot time, ramdisk entry: bootpack / seed-style | ~1.0x | <= 0.6x | 0.55 x | yes |" \
        in table.render_table(report.read_all())


def test_contention_names_the_load_and_the_cpu_pressure() -> None:
    from benchmarks.report import contention

    found = contention()
    assert re.fullmatch(r"load average \d+\.\d(, CPU pressure \d+%)?", found), found
    if Path("/proc/pressure/cpu").is_file():
        assert "CPU pressure" in found
