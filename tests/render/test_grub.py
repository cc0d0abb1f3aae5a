"""GRUB configs for UEFI: same menu, default, timeout, labels and command lines as pxelinux."""

from __future__ import annotations

import pytest

from bootpack.errors import BootpackError
from bootpack.render import Site, render_bundle_configs, render_loader_configs
from bootpack.render.grub import default_config, host_config, quote, render_grub
from bootpack.render.menu import boot_menu, host_item
from bootpack.render.pxelinux import default_config as pxe_default
from bootpack.render.pxelinux import host_config as pxe_host
from bootpack.spec import parse_spec
from bootpack.spec.model import Spec
from tests.support.specs import lab_data, menu_lab, mixed_data


def lab(**changes):  # type: ignore[no-untyped-def]
    return menu_lab("Other's kernel", **changes)


def test_grub_reads_only_grub_cfg_so_it_dispatches_known_macs_with_configfile() -> None:
    spec, site = lab()
    files = render_grub(spec, site)
    assert sorted(files) == ["grub/grub.cfg", "grub/hosts/52:54:00:aa:bb:cc.cfg"]
    text = files["grub/grub.cfg"]
    assert ("if [ \"$net_default_mac\" = '52:54:00:aa:bb:cc' ]; then "
            "configfile '/grub/hosts/52:54:00:aa:bb:cc.cfg'; fi\n") in text
    # the dispatch comes before any menu entry, so a known host never sees the menu
    assert text.index("configfile") < text.index("menuentry")


def test_menu_default_timeout_and_labels_match_pxelinux() -> None:
    spec, site = lab()
    text = default_config(spec, site)
    pxe = pxe_default(spec, site)
    assert "set timeout=5\n" in text and "TIMEOUT 50\n" in pxe
    assert "set default='live'\n" in text and "DEFAULT live\n" in pxe
    assert "menuentry 'Other'\\''s kernel' --id 'other' {" in text
    assert "MENU LABEL Other's kernel" in pxe
    menu = boot_menu(spec, site, "x86_64")
    assert [i.name for i in menu.items] == ["other", "live", "disk"]
    for item in menu.items:
        if item.kernel is not None:
            # the very same command line on both firmwares
            words = " ".join(quote(w) for w in item.cmdline.split())
            assert f"linux $bootpack_files/{item.kernel} {words}" in text
            assert f"APPEND {item.cmdline}\n" in pxe
    assert "menuentry 'Local disk' --id 'disk' {\n  exit\n}" in text
    assert "node=1" not in text


def test_host_file_boots_its_entry_at_once_with_the_host_cmdline() -> None:
    spec, site = lab()
    host = spec.hosts[0]
    text = host_config(spec, site, host)
    assert "set timeout=0\n" in text and "set default='live'\n" in text
    report = "'bootpack.report=http://10.0.2.2/bootpack/up/live'"
    assert (f"  if linux $bootpack_files/images/kdev/vmlinuz 'console=ttyS0,115200' 'node=1' {report}; "
            "initrd $bootpack_files/images/kdev/initrd.img; then true; "
            f"else linux /images/kdev/vmlinuz 'console=ttyS0,115200' 'node=1' {report}; "
            "initrd /images/kdev/initrd.img; fi\n") in text
    assert ("APPEND console=ttyS0,115200 node=1 bootpack.report=http://10.0.2.2/bootpack/up/live\n"
            in pxe_host(spec, site, host))
    assert text.count("menuentry") == 1


def test_nfs_and_live_entries_get_the_booting_nic_like_ipappend() -> None:
    data = lab_data()
    data["entries"][0].update(root="nfs", nfs_version=4)
    spec = parse_spec(data)
    site = Site.from_spec(spec)
    item = host_item(spec, site, spec.hosts[0])
    assert item.bootif
    words = " ".join(quote(w) for w in item.cmdline.split())
    assert (f"linux $bootpack_files/images/kdev/vmlinuz {words} BOOTIF=01-52-54-00-aa-bb-cc;"
            in host_config(spec, site, spec.hosts[0]))
    assert "BOOTIF=01-$net_default_mac;" in default_config(spec, site)
    assert "root=nfs4:10.0.2.2:/srv/bootpack/roots/kdev:vers=4,tcp" in item.cmdline


def test_spec_text_cannot_escape_its_quotes() -> None:
    # $ is not expanded inside single quotes; a quote closes and reopens around an escaped one.
    assert quote("a'b $x") == "'a'\\''b $x'"
    data = lab_data()
    data["entries"][0]["cmdline"] = "a=$net_default_mac ; configfile /evil ; x={"
    spec = parse_spec(data)
    text = default_config(spec, Site.from_spec(spec))
    assert "'a=$net_default_mac' ';' 'configfile' '/evil' ';' 'x={'" in text
    assert "menuentry 'Other'\\''s kernel'" in default_config(*lab())


@pytest.mark.parametrize("word", ["x='", 'foo="a b"', "a\\b"])
def test_quotes_grub_would_escape_are_refused(word: str) -> None:
    data = lab_data()
    data["entries"][0]["cmdline"] = f"console=ttyS0 {word}"
    with pytest.raises(BootpackError, match=r"entries\[0\]\.cmdline: .* GRUB"):
        parse_spec(data)  # validate names the entry
    data["loaders"] = {"chains": ["bios"]}
    parse_spec(data)  # pxelinux passes them as they are
    spec = parse_spec(lab_data())  # and the renderer refuses them on its own too
    entry = spec.entries[0].model_copy(update={"cmdline": f"console=ttyS0 {word}"})
    spec = spec.model_copy(update={"entries": [entry, *spec.entries[1:]]})
    with pytest.raises(BootpackError, match="GRUB"):
        render_grub(spec, Site.from_spec(spec))


@pytest.mark.parametrize("field", ["cmdline", "label"])
def test_control_characters_are_refused(field: str) -> None:
    data = lab_data()
    data["entries"][0][field] = "a\n}\nmenuentry evil {"
    with pytest.raises(BootpackError, match="contains a newline"):
        parse_spec(data)  # the model refuses it first
    # The renderer refuses it too, should a value ever reach it around the model.
    spec = parse_spec(lab_data())
    entry = spec.entries[0].model_copy(update={field: "a\n}\nmenuentry evil {"})
    spec = spec.model_copy(update={"entries": [entry, *spec.entries[1:]]})
    with pytest.raises(BootpackError, match="control character"):
        render_grub(spec, Site.from_spec(spec))


def test_chains_decide_which_loader_configs_a_bundle_has() -> None:
    spec, site = lab()
    files = render_bundle_configs(spec, site)
    assert "tftpboot/grub/grub.cfg" in files and "tftpboot/pxelinux.cfg/default" in files
    spec, site = lab(loaders={"chains": ["uefi"]})
    files = render_bundle_configs(spec, site)
    assert "tftpboot/grub/grub.cfg" in files and "tftpboot/pxelinux.cfg/default" not in files
    spec, site = lab(loaders={"chains": ["bios"]})
    assert "tftpboot/grub/grub.cfg" not in render_bundle_configs(spec, site)


def test_kernels_over_http_when_grub_may_load_http_mod_else_tftp() -> None:
    data = lab_data()
    data["server"]["http_port"] = 8080
    spec = parse_spec(data)
    site = Site.from_spec(spec)
    line = ('set bootpack_files=\nif [ "$lockdown" != "y" ]; then '
            "if insmod http; then set bootpack_files=(http,10.0.2.2:8080); fi; fi\n")
    assert line in default_config(spec, site) and line in host_config(spec, site, spec.hosts[0])
    # before the host dispatch, so a host file's entries see it too
    text = default_config(spec, site)
    assert text.index("insmod http") < text.index("configfile")


def mixed() -> tuple[Spec, Site]:
    spec = parse_spec(mixed_data())
    return spec, Site.from_spec(spec)


def test_each_architecture_gets_its_own_menu() -> None:
    spec, site = mixed()
    x86, arm = boot_menu(spec, site, "x86_64"), boot_menu(spec, site, "arm64")
    assert [i.name for i in x86.items] == ["live"] and x86.default == "live"
    # menu.default ("live") is x86-64: arm64 clients boot their first entry
    assert [i.name for i in arm.items] == ["arm"] and arm.default == "arm"


def test_grub_cfg_sends_arm64_grub_to_its_menu() -> None:
    spec, site = mixed()
    files = render_grub(spec, site)
    cfg, arm = files["grub/grub.cfg"], files["grub/arm64-efi/menu.cfg"]
    dispatch = ("if [ \"$grub_cpu\" = \"arm64\" ]; then configfile '/grub/arm64-efi/menu.cfg'; fi\n")
    # hosts first (a known host's file is the same for both), then arm64, then the x86-64 menu
    assert cfg.index("52:54:00:aa:bb:dd.cfg") < cfg.index(dispatch) < cfg.index("menuentry")
    assert "--id 'live'" in cfg and "images/karm" not in cfg
    assert "--id 'arm'" in arm and "images/kdev" not in arm and "set default='arm'" in arm
    assert "insmod http" in arm  # configfile forgets grub.cfg's variables: set again
    assert "linux $bootpack_files/images/karm/vmlinuz 'console=ttyAMA0'" in files[
        "grub/hosts/52:54:00:aa:bb:dd.cfg"]


def test_only_arm64_renders_no_dispatch_and_no_pxelinux() -> None:
    data = mixed_data()
    data["entries"] = [e for e in data["entries"] if e["name"] == "arm"]
    data["menu"]["default"] = "arm"
    data["hosts"] = [h for h in data["hosts"] if h["name"] == "armnode"]
    spec = parse_spec(data)
    assert spec.loaders.chains == ["uefi-arm64"]
    files = render_loader_configs(spec, Site.from_spec(spec))
    assert sorted(files) == ["grub/grub.cfg", "grub/hosts/52:54:00:aa:bb:dd.cfg"]
    assert "grub_cpu" not in files["grub/grub.cfg"] and "--id 'arm'" in files["grub/grub.cfg"]


def test_pxelinux_lists_only_x86_entries_and_no_arm64_host() -> None:
    spec, site = mixed()
    files = render_loader_configs(spec, site)
    assert "images/karm" not in files["pxelinux.cfg/default"]
    assert "pxelinux.cfg/01-52-54-00-aa-bb-dd" not in files
    assert "pxelinux.cfg/01-52-54-00-aa-bb-cc" in files
