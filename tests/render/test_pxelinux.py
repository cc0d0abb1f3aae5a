from __future__ import annotations

from bootpack.render import render_bundle_configs
from bootpack.render.pxelinux import default_config, host_config, kernel_cmdline, render_pxelinux
from bootpack.spec import parse_spec
from bootpack.spec.site import Site
from tests.support.specs import lab_data


def lab():  # type: ignore[no-untyped-def]
    spec = parse_spec(lab_data())
    return spec, Site.from_spec(spec)


def test_host_file_is_named_the_way_pxelinux_looks_it_up() -> None:
    spec, site = lab()
    files = render_pxelinux(spec, site)
    assert sorted(files) == ["pxelinux.cfg/01-52-54-00-aa-bb-cc", "pxelinux.cfg/default"]


def test_host_boots_its_entry_with_entry_then_host_cmdline() -> None:
    spec, site = lab()
    text = host_config(spec, site, spec.hosts[0])
    assert "DEFAULT live\nPROMPT 0\n" in text
    # over HTTP from the server (lpxelinux), not TFTP
    assert "  KERNEL http://10.0.2.2/images/kdev/vmlinuz\n" in text
    assert "  INITRD http://10.0.2.2/images/kdev/initrd.img\n" in text
    assert ("  APPEND console=ttyS0,115200 node=1 bootpack.report=http://10.0.2.2/bootpack/up/live\n"
            in text)
    assert "UI menu.c32" not in text


def test_default_menu_lists_entries_with_timeout_in_tenths() -> None:
    data = lab_data()
    data["entries"].append({"name": "disk", "label": "Local disk", "root": "local"})
    spec = parse_spec(data)
    text = default_config(spec, Site.from_spec(spec))
    assert "UI menu.c32\nDEFAULT live\nPROMPT 0\nTIMEOUT 50\nMENU TITLE Lab\n" in text
    assert "LABEL live\n  MENU LABEL Kernel under test\n  MENU DEFAULT\n" in text
    assert "LABEL disk\n  MENU LABEL Local disk\n  LOCALBOOT 0\n" in text
    assert "node=1" not in text


def test_timeout_zero_boots_the_default_without_a_menu() -> None:
    data = lab_data()
    data["menu"]["timeout"] = 0
    spec = parse_spec(data)
    text = default_config(spec, Site.from_spec(spec))
    assert "UI menu.c32" not in text and "TIMEOUT" not in text
    assert "DEFAULT live\nPROMPT 0\n" in text


def test_nfs_without_initrd_uses_the_kernels_own_nfsroot() -> None:
    data = lab_data()
    del data["images"]["kdev"]["initrd"]
    data["entries"][0].update(root="nfs", nfs_path="/storage/diskless/root")
    spec = parse_spec(data)
    text = default_config(spec, Site.from_spec(spec))
    assert ("APPEND root=/dev/nfs nfsroot=10.0.2.2:/storage/diskless/root,vers=3,tcp ip=dhcp ro "
            "console=ttyS0,115200") in text
    assert "INITRD" not in text
    assert "IPAPPEND 2" in text


def test_nfs_with_initrd_uses_dracuts_form_and_default_export_path() -> None:
    data = lab_data()
    data["entries"][0].update(root="nfs", nfs_version=4)
    spec = parse_spec(data)
    line = kernel_cmdline(spec, Site.from_spec(spec), spec.entries[0])
    assert line.startswith("root=nfs4:10.0.2.2:/srv/bootpack/roots/kdev:vers=4,tcp ip=dhcp rd.neednet=1 ro")
    # NFSv4 owners as numbers: no id-mapping upcall while booting (the appliance's Ganesha
    # sends numeric owners to match).
    assert line.split()[4] == "nfs.nfs4_disable_idmapping=1"


def test_nfs_version_3_gets_no_nfsv4_parameters() -> None:
    data = lab_data()
    data["entries"][0].update(root="nfs", nfs_version=3)
    spec = parse_spec(data)
    line = kernel_cmdline(spec, Site.from_spec(spec), spec.entries[0])
    assert line.startswith("root=nfs:10.0.2.2:/srv/bootpack/roots/kdev:vers=3,tcp ip=dhcp rd.neednet=1 ro")
    assert "nfs4" not in line


def test_live_fetches_the_squashfs_from_the_http_server() -> None:
    data = lab_data()
    data["images"]["kdev"]["squashfs"] = "artifacts/root.squashfs"
    data["server"]["http_port"] = 8080
    data["entries"][0]["root"] = "live"
    spec = parse_spec(data)
    line = kernel_cmdline(spec, Site.from_spec(spec), spec.entries[0], "node=1")
    assert line == ("root=live:http://10.0.2.2:8080/images/kdev/squashfs.img "
                    "rd.live.overlay.overlayfs=1 ip=dhcp rd.neednet=1 console=ttyS0,115200 node=1 "
                    "bootpack.report=http://10.0.2.2:8080/bootpack/up/live")


def test_a_different_site_address_flows_into_every_file() -> None:
    data = lab_data()
    data["entries"][0]["root"] = "nfs"
    spec = parse_spec(data)
    moved = Site.from_spec(spec).__class__(**{**Site.from_spec(spec).__dict__,
                                              "address": __import__("ipaddress").IPv4Address("10.77.0.9")})
    files = render_bundle_configs(spec, moved)
    for path in ("tftpboot/pxelinux.cfg/default", "etc/dhcpd.conf", "etc/dnsmasq.conf",
                 "etc/kea-dhcp4.json"):
        assert "10.77.0.9" in files[path], path
        assert "10.0.2.2:" not in files[path], path


def test_report_up_adds_the_report_url_unless_turned_off() -> None:
    data = lab_data()
    spec = parse_spec(data)
    assert "bootpack.report=http://10.0.2.2/bootpack/up/live" in host_config(
        spec, Site.from_spec(spec), spec.hosts[0])
    data["entries"][0]["report_up"] = False
    spec = parse_spec(data)
    assert "bootpack.report" not in default_config(spec, Site.from_spec(spec))
    data["hosts"][0]["report_up"] = True  # the host's choice wins over its entry's
    spec = parse_spec(data)
    assert "bootpack.report=" in host_config(spec, Site.from_spec(spec), spec.hosts[0])
