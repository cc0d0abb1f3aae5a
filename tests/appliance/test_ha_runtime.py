"""DHCP high availability's pure parts: the --peer values, the pair, and Kea's config, checked by
the real kea-dhcp4 (`-t`, config test only: it opens no socket)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from bootpack.appliance.runtime import (
    KEA_HOOKS,
    HighAvailability,
    Paths,
    Peer,
    high_availability,
    kea_runtime_config,
    parse_peer,
    render_runtime,
    runtime_site,
)
from bootpack.cli import main
from bootpack.errors import BootpackError
from tests.appliance.test_runtime import make_spec

A = IPv4Address("192.168.50.2")
B = IPv4Address("192.168.50.3")
PEERS = (Peer("boot-a", A), Peer("boot-b", B, 8001))


def test_parse_peer() -> None:
    assert parse_peer("boot-a=http://10.1.2.3:8000/") == Peer("boot-a", IPv4Address("10.1.2.3"), 8000)
    assert parse_peer("b=http://10.1.2.4") == Peer("b", IPv4Address("10.1.2.4"), 8000)
    assert Peer("b", IPv4Address("10.1.2.4"), 8080).url == "http://10.1.2.4:8080/"


@pytest.mark.parametrize("value, complaint", [
    ("http://10.1.2.3:8000/", "NAME=URL"),
    ("Boot=http://10.1.2.3/", "NAME=URL"),
    ("a b=http://10.1.2.3/", "NAME=URL"),
    ("a=https://10.1.2.3/", "http://IPV4"),
    ("a=http://boot-a.example:8000/", "no host names"),
    ("a=http://10.1.2.300/", "http://IPV4"),
    ("a=http://10.1.2.3:0/", "http://IPV4"),
    ("a=http://10.1.2.3:99999/", "http://IPV4"),
    ('a=http://10.1.2.3/"}', "http://IPV4"),  # nothing that could break out of the JSON
])
def test_parse_peer_refuses(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace(".", r"\.")):
        parse_peer(value)


def test_pair_finds_itself_by_address() -> None:
    ha = high_availability(PEERS, B)
    assert ha.this == "boot-b" and ha.role(ha.me) == "standby"
    assert high_availability(PEERS, A).role(PEERS[0]) == "primary"
    assert high_availability(PEERS, A, "boot-a").this == "boot-a"


@pytest.mark.parametrize("peers, address, this, complaint", [
    (PEERS[:1], A, None, "at least two"),
    ((PEERS[0], Peer("boot-a", B)), A, None, "its own name"),
    ((PEERS[0], Peer("x", A)), A, None, "its own URL"),
    (PEERS, IPv4Address("192.168.50.9"), None, "none of the peers"),
    (PEERS, A, "boot-c", "not one of the peers"),
    (PEERS, A, "boot-b", "not on this server's address"),
])
def test_pair_refuses(peers: tuple[Peer, ...], address: IPv4Address, this: str | None,
                      complaint: str) -> None:
    with pytest.raises(BootpackError, match=complaint):
        high_availability(peers, address, this)


def _kea_check(config: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(json.dumps(config))
    env = {**os.environ, "KEA_PIDFILE_DIR": str(tmp_path), "KEA_LOCKFILE_DIR": str(tmp_path)}
    return subprocess.run(["kea-dhcp4", "-t", str(path)], capture_output=True, text=True, env=env)


needs_kea = pytest.mark.skipif(shutil.which("kea-dhcp4") is None or not Path(KEA_HOOKS).is_dir(),
                               reason="needs kea-dhcp4-server (scripts/install --test)")


@needs_kea
def test_kea_accepts_the_ha_config(tmp_path: Path) -> None:
    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack").site
    paths = Paths(bundle="/srv/bootpack", runtime=str(tmp_path))
    ha = high_availability(PEERS, A)
    config = kea_runtime_config(spec, site, paths, "lo", ha)
    result = _kea_check(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    [lease_cmds, hook] = config["Dhcp4"]["hooks-libraries"]
    assert lease_cmds["library"].endswith("libdhcp_lease_cmds.so")  # must come before HA
    [relationship] = hook["parameters"]["high-availability"]
    assert relationship["this-server-name"] == "boot-a" and relationship["mode"] == "hot-standby"
    assert [(p["name"], p["url"], p["role"]) for p in relationship["peers"]] == [
        ("boot-a", "http://192.168.50.2:8000/", "primary"),
        ("boot-b", "http://192.168.50.3:8001/", "standby")]
    assert relationship["multi-threading"]["http-dedicated-listener"] is True

    # The check can fail (kea-dhcp4 -t loads the hooks but does not check their parameters:
    # the two-container test below does that by running the pair).
    config["Dhcp4"]["subnet4"][0]["pools"] = [{"pool": "10.9.9.1 - 10.9.9.5"}]
    bad = _kea_check(config, tmp_path)
    assert bad.returncode != 0 and "10.9.9.1" in bad.stdout + bad.stderr


@needs_kea
def test_kea_single_server_config(tmp_path: Path) -> None:
    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack").site
    config = kea_runtime_config(spec, site, Paths("/srv/bootpack", str(tmp_path)), "lo", None)
    assert "hooks-libraries" not in config["Dhcp4"]
    result = _kea_check(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_runtime_runs_kea_for_a_pair_and_dhcpd_alone() -> None:
    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack").site
    paths = Paths(bundle="/srv/bootpack", runtime="/run/bootpack")
    pair = render_runtime(spec, site, paths, "eth0", ha=HighAvailability(PEERS, "boot-a"))
    names = [d.name for d in pair.services]
    assert "kea" in names and "dhcpd" not in names
    kea = next(d for d in pair.services if d.name == "kea")
    assert kea.argv == ("env", "KEA_PIDFILE_DIR=/run/bootpack", "KEA_LOCKFILE_DIR=/run/bootpack",
                        "kea-dhcp4", "-c", "/run/bootpack/kea-dhcp4.conf")
    config = json.loads(pair.files["kea-dhcp4.conf"])
    assert config["Dhcp4"]["interfaces-config"]["interfaces"] == ["eth0"]
    assert config["Dhcp4"]["lease-database"]["persist"] is True
    alone = render_runtime(spec, site, paths, "eth0")
    assert "dhcpd" in [d.name for d in alone.services] and "kea-dhcp4.conf" not in alone.files


def test_serve_refuses_bad_peers_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse: usage and the message, status 2
        main(["serve", str(tmp_path), "--peer", "a=http://host.example/"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no host names" in err and "Traceback" not in err
    code = main(["serve", str(tmp_path), "--verify", str(tmp_path / "k.pub")])
    assert code == 2 and "--verify checks a published version" in capsys.readouterr().err


def test_stale_pid_files_are_removed_at_start(tmp_path: Path) -> None:
    """Found by the failover test: a crashed, restarted appliance kept Kea's pid file, whose pid
    belonged to another process in the new container, and Kea refused to start."""
    from bootpack.appliance.serve import prepare_runtime
    from bootpack.bundle import layout

    spec = make_spec()
    site = runtime_site(spec, root="/srv/bootpack").site
    bundle = tmp_path / "bundle"
    (bundle / layout.TFTP_DIR).mkdir(parents=True)
    paths = Paths(bundle=str(bundle), runtime=str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kea-dhcp4.kea-dhcp4.pid").write_text("1\n")
    (tmp_path / "run" / "kea-leases4.csv").write_text("leases\n")
    runtime = render_runtime(spec, site, paths, "eth0", ha=HighAvailability(PEERS, "boot-a"))
    prepare_runtime(paths, runtime)
    assert not (tmp_path / "run" / "kea-dhcp4.kea-dhcp4.pid").exists()
    assert (tmp_path / "run" / "kea-leases4.csv").read_text() == "leases\n"  # leases are kept
    assert (tmp_path / "run" / "kea-dhcp4.conf").is_file()


def test_serve_bundle_reference_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`serve --bundle` fails before any daemon with a clear message: a malformed reference, an
    unreachable registry, the generic image started without --bundle."""
    run = tmp_path / "run"
    assert main(["serve", "--runtime-dir", str(run), "--bundle", "site/boot:1.0"]) == 2
    err = capsys.readouterr().err
    assert "name the registry host first" in err and "Traceback" not in err
    assert main(["serve", "--runtime-dir", str(run), "--insecure",
                 "--bundle", "127.0.0.1:1/site/boot:1.0"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the registry" in err and "Traceback" not in err
    from bootpack.appliance.image import GENERIC_NOTE, GENERIC_NOTE_FILE

    generic = tmp_path / "srv"
    generic.mkdir()
    (generic / GENERIC_NOTE_FILE).write_text(GENERIC_NOTE)
    assert main(["serve", str(generic), "--runtime-dir", str(run)]) == 2
    assert "generic appliance image" in capsys.readouterr().err
