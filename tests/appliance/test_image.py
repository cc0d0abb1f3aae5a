"""bootpack.appliance.image without a Docker engine: platforms, per-platform tags, which wheels
must be fetched for a foreign CPU, and `bootpack image`'s refusals (exit status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootpack.appliance import image
from bootpack.cli import main


@pytest.mark.parametrize(("text", "expected"), [
    ("linux/amd64", ("x86_64",)),
    ("linux/arm64", ("arm64",)),
    ("linux/arm64, linux/amd64", ("arm64", "x86_64")),
])
def test_platforms_parse_in_the_order_given(text: str, expected: tuple[str, ...]) -> None:
    assert image.parse_platforms(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("linux/ppc64le", "'linux/ppc64le' is not a platform the appliance is built for; use "
                      "linux/amd64 or linux/arm64"),
    ("arm64", "'arm64' is not a platform"),
    ("linux/arm64,", "'' is not a platform"),
    ("linux/arm64,linux/arm64", "'linux/arm64' is given twice"),
])
def test_bad_platforms_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        image.parse_platforms(text)


@pytest.mark.parametrize(("tag", "expected"), [
    ("boot:1.0", "boot:1.0-arm64"),
    ("boot", "boot:latest-arm64"),
    ("127.0.0.1:5000/site/boot:2", "127.0.0.1:5000/site/boot:2-arm64"),
    ("127.0.0.1:5000/site/boot", "127.0.0.1:5000/site/boot:latest-arm64"),
])
def test_platform_tag_suffixes_the_tag(tag: str, expected: str) -> None:
    assert image.platform_tag(tag, "arm64") == expected
    assert image.platform_tag(tag, "x86_64") == expected.removesuffix("arm64") + "amd64"


def test_only_compiled_wheels_are_replaced(tmp_path: Path) -> None:
    names = ["pydantic_core-2.50.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
             "cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl",
             "pydantic-2.14.3-py3-none-any.whl", "six-1.17.0-py2.py3-none-any.whl",
             "pkg-1.0-1build-cp311-cp311-linux_x86_64.whl"]
    for name in names:
        (tmp_path / name).touch()
    found = {p.name: pin for p, pin in image.compiled_wheels(tmp_path).items()}
    assert found == {names[0]: "pydantic_core==2.50.4", names[1]: "cryptography==50.0.2",
                     names[4]: "pkg==1.0"}


def test_a_file_that_is_no_wheel_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.whl").touch()
    with pytest.raises(Exception, match=r"junk\.whl: not a wheel file name"):
        image.compiled_wheels(tmp_path)


def test_foreign_wheels_are_asked_for_the_appliance_python_and_every_glibc_up_to_2_36() -> None:
    args = image.wheel_platform_args("arm64")
    platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
    assert platforms[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in platforms
    assert "manylinux2014_aarch64" in platforms and not any("x86_64" in p for p in platforms)
    assert args[args.index("--python-version") + 1] == "3.11"
    assert "--only-binary=:all:" in args


def test_several_platforms_without_push_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "--generic", "-t", "boot:1", "--platform", "linux/amd64,linux/arm64"]) == 2
    assert "several platforms needs --push" in capsys.readouterr().err


def test_an_unknown_platform_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["image", "--generic", "-t", "boot:1", "--platform", "linux/s390x"])
    assert exc.value.code == 2
    assert "'linux/s390x' is not a platform" in capsys.readouterr().err


def test_push_needs_a_registry_reference_with_a_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "--generic", "-t", "boot:1", "--push"]) == 2
    assert "--push pushes to the registry -t names: 'boot:1': no repository path" in \
        capsys.readouterr().err
    assert main(["image", "--generic", "-t", "127.0.0.1:9/site/boot", "--push"]) == 2
    assert "give the tag to push" in capsys.readouterr().err


def test_a_foreign_platform_without_binfmt_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No binfmt_misc entry (a folder of this test's own stands in for /proc/sys/fs/binfmt_misc):
    # the named check fails before any Docker call.
    from bootpack.errors import BootpackError
    from bootpack.images import docker_image

    monkeypatch.setattr(docker_image, "BINFMT", tmp_path)
    foreign = "arm64" if image.build_host_architecture() == "x86_64" else "x86_64"
    with pytest.raises(BootpackError, match="apt-get install qemu-user-static binfmt-support"):
        image.bake_image(None, "boot:1", architecture=foreign, client=object())  # type: ignore[arg-type]
