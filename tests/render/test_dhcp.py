"""DHCP snippets: their content, and acceptance by the real programs (dhcpd, dnsmasq, Kea)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bootpack.render import render_loader_configs
from bootpack.render.dhcp import render_dhcp, render_dnsmasq, render_isc, render_kea
from bootpack.spec import parse_spec
from bootpack.spec.model import Spec
from bootpack.spec.site import Site
from tests.support.specs import lab_data, mixed_data


def lab(mode: str = "server", chains: tuple[str, ...] = ("bios", "uefi"),  # type: ignore[no-untyped-def]
        force: str | None = None):
    data = mixed_data() if "uefi-arm64" in chains else lab_data()
    if not {"uefi", "bios", "ipxe"} & set(chains):  # arm64 only: the lab's image is arm64 too
        data["images"]["kdev"]["architecture"] = "arm64"
    data["dhcp"]["mode"] = mode
    data["loaders"] = {"chains": list(chains)}
    data["hosts"].append({"name": "node2", "mac": "52:54:00:00:00:02", "ip": "10.0.2.51"})
    if force:
        data["hosts"][-1]["chain"] = force
    spec = parse_spec(data)
    return spec, Site.from_spec(spec)


def test_isc_has_pxe_boot_data_and_a_fixed_address_per_host() -> None:
    text = render_isc(*lab())
    assert "subnet 10.0.2.0 netmask 255.255.255.0 {" in text
    assert "range 10.0.2.100 10.0.2.200;" in text
    assert "next-server 10.0.2.2;" in text and 'filename "pxelinux.0";' in text
    assert "host node1 {\n  hardware ethernet 52:54:00:aa:bb:cc;\n  fixed-address 10.0.2.50;" in text
    assert "host node2 {" in text


def test_isc_chooses_the_loader_by_option_93() -> None:
    text = render_isc(*lab())
    assert "option bootpack-arch code 93 = unsigned integer 16;" in text
    assert ("  } elsif (option bootpack-arch = 00:07 or option bootpack-arch = 00:09) {\n"
            '    filename "bootx64.efi";\n'
            "  } elsif option bootpack-arch = 00:10 {\n"
            '    option vendor-class-identifier "HTTPClient";\n'
            '    filename "http://10.0.2.2/bootx64.efi";\n'
            "  } else {\n"
            '    filename "pxelinux.0";\n  }\n') in text
    # a host block must not set a filename: it would override the architecture choice
    host = text[text.index("host node1"):]
    assert "filename" not in host and "next-server 10.0.2.2;" in host
    only_bios = render_isc(*lab(chains=("bios",)))
    assert "bootx64.efi" not in only_bios and '    filename "pxelinux.0";\n' in only_bios
    assert "pxelinux.0" not in render_isc(*lab(chains=("uefi",)))


def test_a_forced_host_gets_its_chain_whatever_its_architecture() -> None:
    text = render_isc(*lab(force="bios"))
    assert ('  if hardware = 01:52:54:00:00:00:02 {\n    filename "pxelinux.0";\n'
            '  } elsif exists user-class and option user-class = "iPXE" and (not exists') in text
    dnsmasq = render_dnsmasq(*lab(force="uefi"))
    assert "dhcp-mac=set:bp-force-uefi,52:54:00:00:00:02\n" in dnsmasq
    assert "tag-if=set:bp-uefi,tag:bp-force-uefi\n" in dnsmasq
    classes = json.loads(render_kea(*lab(force="uefi")))["Dhcp4"]["client-classes"]
    assert classes[0]["test"] == ("((option[93].hex == 0x0007 or option[93].hex == 0x0009) and not "
                                  "(pkt4.mac == 0x525400000002)) or pkt4.mac == 0x525400000002")


def test_dnsmasq_server_and_proxy_forms() -> None:
    server = render_dnsmasq(*lab())
    assert "dhcp-range=10.0.2.100,10.0.2.200,255.255.255.0,3600" in server
    assert "dhcp-boot=tag:bp-bios,pxelinux.0,,10.0.2.2" in server
    assert "dhcp-boot=tag:bp-uefi,bootx64.efi,,10.0.2.2" in server
    assert "dhcp-boot=tag:bp-http,http://10.0.2.2/bootx64.efi" in server
    assert "dhcp-option-force=tag:bp-http,option:vendor-class,HTTPClient" in server
    for arch in (7, 9):
        assert f"dhcp-match=set:bp-arch-uefi,option:client-arch,{arch}\n" in server
    assert "dhcp-host=52:54:00:aa:bb:cc,10.0.2.50,node1" in server
    proxy = render_dnsmasq(*lab("proxy"))
    assert "dhcp-range=10.0.2.0,proxy,255.255.255.0" in proxy
    assert 'pxe-service=tag:bp-bios,x86PC,"Lab",pxelinux,10.0.2.2' in proxy
    assert "dhcp-boot=tag:bp-uefi,bootx64.efi,,10.0.2.2\n" in proxy and "EFI" not in proxy
    assert "dhcp-host" not in proxy  # proxy mode hands out no addresses


def test_kea_reservations_and_boot_fields() -> None:
    config = json.loads(render_kea(*lab()))["Dhcp4"]
    subnet = config["subnet4"][0]
    assert subnet["next-server"] == "10.0.2.2" and "boot-file-name" not in subnet
    classes = {c["name"]: c for c in config["client-classes"]}
    assert classes["bootpack-uefi"]["boot-file-name"] == "bootx64.efi"
    assert classes["bootpack-bios"]["boot-file-name"] == "pxelinux.0"
    assert classes["bootpack-http"]["option-data"] == [{"name": "vendor-class-identifier",
                                                         "data": "HTTPClient"}]
    only_bios = json.loads(render_kea(*lab(chains=("bios",))))["Dhcp4"]
    assert [c["name"] for c in only_bios["client-classes"]] == ["bootpack-bios-ipxe", "bootpack-bios"]
    assert "boot-file-name" not in only_bios["subnet4"][0]  # the classes choose
    assert subnet["pools"] == [{"pool": "10.0.2.100 - 10.0.2.200"}]
    assert {"hw-address": "52:54:00:aa:bb:cc", "ip-address": "10.0.2.50",
            "hostname": "node1"} in subnet["reservations"]


def test_arm64_clients_get_the_arm64_shim_in_every_server() -> None:
    spec, site = lab(chains=("bios", "uefi", "uefi-arm64"))
    isc = render_isc(spec, site)
    assert ('} elsif option bootpack-arch = 00:0b {\n    filename "bootaa64.efi";\n' in isc)
    dnsmasq = render_dnsmasq(spec, site)
    assert "dhcp-match=set:bp-arch-arm64,option:client-arch,11\n" in dnsmasq
    assert "dhcp-boot=tag:bp-arm64,bootaa64.efi,,10.0.2.2\n" in dnsmasq
    assert ("tag-if=set:bp-bios,tag:!bp-bios-ipxe,tag:!bp-uefi,tag:!bp-ipxe,tag:!bp-ipxe-script,"
            "tag:!bp-http,tag:!bp-arm64\n") in dnsmasq
    proxy = render_dnsmasq(*lab("proxy", ("bios", "uefi", "uefi-arm64")))
    assert "dhcp-boot=tag:bp-arm64,bootaa64.efi,,10.0.2.2\n" in proxy
    classes = {c["name"]: c for c in json.loads(render_kea(spec, site))["Dhcp4"]["client-classes"]}
    assert classes["bootpack-arm64"]["test"] == "option[93].hex == 0x000b"
    assert classes["bootpack-arm64"]["boot-file-name"] == "bootaa64.efi"
    assert "not member('bootpack-arm64')" in classes["bootpack-bios"]["test"]


def test_a_host_forced_to_arm64_gets_the_arm64_shim() -> None:
    spec, site = lab(chains=("bios", "uefi", "uefi-arm64"), force="uefi-arm64")
    assert 'if hardware = 01:52:54:00:00:00:02 {\n    filename "bootaa64.efi";' in render_isc(spec, site)
    dnsmasq = render_dnsmasq(spec, site)
    assert "dhcp-mac=set:bp-force-uefi-arm64,52:54:00:00:00:02\n" in dnsmasq
    assert "tag-if=set:bp-arm64,tag:bp-force-uefi-arm64\n" in dnsmasq
    classes = {c["name"]: c for c in json.loads(render_kea(spec, site))["Dhcp4"]["client-classes"]}
    assert classes["bootpack-arm64"]["test"].endswith("or pkt4.mac == 0x525400000002")
    assert "not (pkt4.mac == 0x525400000002)" in classes["bootpack-uefi"]["test"]


def test_files_per_mode() -> None:
    assert sorted(render_dhcp(*lab())) == ["dhcpd.conf", "dnsmasq.conf", "kea-dhcp4.json"]
    assert sorted(render_dhcp(*lab("proxy"))) == ["dnsmasq.conf"]
    assert render_dhcp(*lab("none")) == {}


def _check(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _needs(program: str) -> None:
    if shutil.which(program) is None:
        pytest.fail(f"{program} not installed: run scripts/install --test")


CHAIN_SETS = [("bios", "uefi"), ("uefi",), ("bios",), ("ipxe", "bios", "uefi"), ("ipxe",),
              ("uefi", "ipxe"), ("bios", "uefi", "uefi-arm64"), ("uefi-arm64",),
              ("uefi-arm64", "bios"), ("bios", "uefi", "ipxe", "uefi-arm64")]


@pytest.mark.parametrize("chains", CHAIN_SETS)
@pytest.mark.parametrize("mode", ["server", "proxy"])
def test_dnsmasq_accepts_the_snippet(tmp_path: Path, mode: str, chains: tuple[str, ...]) -> None:
    _needs("dnsmasq")
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(render_dnsmasq(*lab(mode, chains, force=chains[0])))
    result = _check(["dnsmasq", "--test", "-C", str(conf)])
    assert result.returncode == 0, result.stderr
    conf.write_text(conf.read_text() + "dhcp-range=nonsense\n")
    assert _check(["dnsmasq", "--test", "-C", str(conf)]).returncode != 0


@pytest.mark.parametrize("chains", CHAIN_SETS)
def test_isc_dhcpd_accepts_the_snippet(tmp_path: Path, chains: tuple[str, ...]) -> None:
    _needs("dhcpd")
    conf = tmp_path / "dhcpd.conf"
    conf.write_text(render_isc(*lab("server", chains, force=chains[0])))
    result = _check(["dhcpd", "-t", "-cf", str(conf)])
    assert result.returncode == 0, result.stderr
    conf.write_text(conf.read_text().replace("fixed-address 10.0.2.50;", "fixed-address;"))
    assert _check(["dhcpd", "-t", "-cf", str(conf)]).returncode != 0


@pytest.mark.parametrize("chains", CHAIN_SETS)
def test_kea_accepts_the_snippet(tmp_path: Path, chains: tuple[str, ...]) -> None:
    _needs("kea-dhcp4")
    conf = tmp_path / "kea-dhcp4.json"
    conf.write_text(render_kea(*lab("server", chains, force=chains[0])))
    result = _check(["kea-dhcp4", "-t", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr
    conf.write_text(conf.read_text().replace('"10.0.2.100 - 10.0.2.200"', '"10.9.9.1 - 10.9.9.2"'))
    assert _check(["kea-dhcp4", "-t", str(conf)]).returncode != 0


def test_menu_title_with_quotes_is_quoted_for_dnsmasq(tmp_path: Path) -> None:
    # A legal title may hold '"', '\\', ',' and '#': inside dnsmasq's quotes they stay text.
    _needs("dnsmasq")
    data = lab_data()
    data["dhcp"]["mode"] = "proxy"
    data["menu"]["title"] = 'Lab "A" \\ #1, x86'
    spec = parse_spec(data)
    text = render_dnsmasq(spec, Site.from_spec(spec))
    assert 'pxe-service=tag:bp-bios,x86PC,"Lab \\"A\\" \\\\ #1, x86",pxelinux,10.0.2.2\n' in text
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(text)
    assert _check(["dnsmasq", "--test", "-C", str(conf)]).returncode == 0


def test_quoting_helpers_escape_or_refuse() -> None:
    from bootpack.errors import BootpackError
    from bootpack.render import quoting

    assert quoting.dhcpd_string('a"b\\c') == '"a\\"b\\\\c"'
    assert quoting.dnsmasq_string('a"b') == '"a\\"b"'
    assert quoting.ganesha_string("/srv/x") == '"/srv/x"'
    for helper, value in ((quoting.pxelinux, "a\nKERNEL x"), (quoting.dnsmasq_string, "a\rb"),
                          (quoting.dnsmasq_word, "lab,evil"), (quoting.dhcpd_word, 'a"'),
                          (quoting.exports_path, "/x *(rw)"), (quoting.ganesha_string, '/x";'),
                          (quoting.nginx_path, "/srv/$x"), (quoting.nginx_path, "/a b")):
        with pytest.raises(BootpackError, match="cannot be written into"):
            helper(value)


def test_the_daemons_reject_a_broken_architecture_rule(tmp_path: Path) -> None:
    """The validators really read the new parts: break each one and each daemon says no."""
    for program in ("dhcpd", "dnsmasq", "kea-dhcp4"):
        _needs(program)
    isc = tmp_path / "dhcpd.conf"
    isc.write_text(render_isc(*lab()).replace("option bootpack-arch = 00:10 {",
                                              "option bootpack-arch = {"))
    assert _check(["dhcpd", "-t", "-cf", str(isc)]).returncode != 0
    dnsmasq = tmp_path / "dnsmasq.conf"
    dnsmasq.write_text(render_dnsmasq(*lab()).replace("option:client-arch,9", "option:no-such-option,9"))
    assert _check(["dnsmasq", "--test", "-C", str(dnsmasq)]).returncode != 0
    kea = tmp_path / "kea-dhcp4.json"
    kea.write_text(render_kea(*lab()).replace("member('bootpack-uefi')", "member(bootpack-uefi)"))
    result = _check(["kea-dhcp4", "-t", str(kea)])
    assert result.returncode != 0


IPXE = ("bios", "uefi", "ipxe")


def test_ipxe_is_handed_its_script_never_itself() -> None:
    """Trap T3: Debian's iPXE DHCPs again and, handed snponly.efi, would load itself forever.
    Every server matches its user class "iPXE" (UEFI clients) and hands it the script URL."""
    isc = render_isc(*lab(chains=IPXE))
    script = 'filename "http://10.0.2.2/ipxe/boot.ipxe";'
    rule = ('  if exists user-class and option user-class = "iPXE" and (option bootpack-arch = '
            f'00:07 or option bootpack-arch = 00:09) {{\n    {script}\n')
    assert isc.index(rule) < isc.index('filename "bootx64.efi"')  # first match wins
    assert 'filename "http://10.0.2.2/snponly.efi";' in isc  # UEFI HTTP boot gets iPXE
    dnsmasq = render_dnsmasq(*lab(chains=IPXE))
    assert "dhcp-userclass=set:bp-ipxe-client,iPXE\n" in dnsmasq
    assert "dhcp-boot=tag:bp-ipxe-script,http://10.0.2.2/ipxe/boot.ipxe\n" in dnsmasq
    # the binary's tags exclude the script's: dnsmasq never offers both
    assert "tag-if=set:bp-ipxe,tag:bp-force-ipxe,tag:!bp-ipxe-script\n" in dnsmasq
    assert "tag-if=set:bp-uefi,tag:bp-arch-uefi,tag:!bp-forced,tag:!bp-ipxe-script\n" in dnsmasq
    classes = json.loads(render_kea(*lab(chains=IPXE)))["Dhcp4"]["client-classes"]
    assert classes[0]["name"] == "bootpack-ipxe-script"
    assert classes[0]["test"].startswith("substring(option[77].hex,0,4) == 'iPXE' and ")
    assert all("not member('bootpack-ipxe-script')" in c["test"] for c in classes[1:])


def test_a_bios_ipxe_rom_gets_the_ipxe_script_in_every_server() -> None:
    """A BIOS client whose PXE ROM is iPXE (user class "iPXE", option 93 absent or 0) gets the
    iPXE script's URL (iPXE fetches kernel and initrd itself); every other BIOS client
    lpxelinux.0 as pxelinux.0; a host forced to a chain keeps its chain's file."""
    script = "http://10.0.2.2/ipxe/boot.ipxe"
    for chains in (("bios",), ("bios", "uefi"), IPXE):
        isc = render_isc(*lab(chains=chains))
        rule = ('if exists user-class and option user-class = "iPXE" and (not exists bootpack-arch '
                f'or option bootpack-arch = 00:00) {{\n    filename "{script}";\n')
        assert rule in isc and isc.index(rule) < isc.rindex('filename "pxelinux.0"')
        dnsmasq = render_dnsmasq(*lab(chains=chains))
        assert "dhcp-userclass=set:bp-ipxe-client,iPXE\n" in dnsmasq
        assert ("tag-if=set:bp-bios-ipxe,tag:bp-ipxe-client,tag:!bp-forced,tag:!bp-uefi,"
                "tag:!bp-ipxe,tag:!bp-ipxe-script,tag:!bp-http,tag:!bp-arm64\n") in dnsmasq
        # set before bp-bios, which excludes it: dnsmasq never offers both
        assert dnsmasq.index("set:bp-bios-ipxe,") < dnsmasq.index("set:bp-bios,tag:!bp-bios-ipxe,")
        assert f"dhcp-boot=tag:bp-bios-ipxe,{script}\n" in dnsmasq
        # behind a proxy DHCP: the script by its TFTP name, from a pxe-service (no ".0" added)
        proxy = render_dnsmasq(*lab("proxy", chains=chains))
        assert 'pxe-service=tag:bp-bios-ipxe,x86PC,"Lab",ipxe/boot.ipxe,10.0.2.2\n' in proxy
        assert 'pxe-service=tag:bp-bios,x86PC,"Lab",pxelinux,10.0.2.2\n' in proxy
        assert "dhcp-boot=tag:bp-bios-ipxe" not in proxy
        classes = {c["name"]: c for c in
                   json.loads(render_kea(*lab(chains=chains)))["Dhcp4"]["client-classes"]}
        bios_ipxe = classes["bootpack-bios-ipxe"]
        assert bios_ipxe["boot-file-name"] == script
        assert bios_ipxe["test"].startswith(
            "(substring(option[77].hex,0,4) == 'iPXE' and (not option[93].exists or "
            "option[93].hex == 0x0000)") or chains == ("bios",)
        assert "not member('bootpack-bios-ipxe')" in classes["bootpack-bios"]["test"]
        assert "ipxe/boot.ipxe" in render_loader_configs(*lab(chains=chains))
    forced = render_dnsmasq(*lab(force="bios"))
    assert "tag-if=set:bp-bios-ipxe,tag:bp-ipxe-client,tag:!bp-forced," in forced
    kea = {c["name"]: c for c in json.loads(render_kea(*lab(force="bios")))["Dhcp4"]["client-classes"]}
    assert "not (pkt4.mac == 0x525400000002)" in kea["bootpack-bios-ipxe"]["test"]


def test_a_bios_ipxe_rom_gets_plain_pxelinux_with_bios_ipxe_off() -> None:
    """loaders.bios_ipxe = false: BIOS iPXE ROMs get plain pxelinux.0 (pxelinux-ipxe.0, iPXE's
    HTTP through its PXE interface) and its menu, and the bundle carries no iPXE scripts."""
    def off(mode: str) -> tuple[Spec, Site]:
        data = lab_data()
        data["dhcp"]["mode"] = mode
        data["loaders"] = {"bios_ipxe": False}
        spec = parse_spec(data)
        return spec, Site.from_spec(spec)

    spec, site = off("server")
    assert not spec.bios_ipxe_scripts and spec.loaders.chains == ["bios", "uefi"]
    assert ('(not exists bootpack-arch or option bootpack-arch = 00:00) {\n'
            '    filename "pxelinux-ipxe.0";\n') in render_isc(spec, site)
    assert "dhcp-boot=tag:bp-bios-ipxe,pxelinux-ipxe.0,,10.0.2.2\n" in render_dnsmasq(spec, site)
    assert 'pxe-service=tag:bp-bios-ipxe,x86PC,"Lab",pxelinux-ipxe,10.0.2.2\n' in \
        render_dnsmasq(*off("proxy"))
    classes = {c["name"]: c for c in json.loads(render_kea(spec, site))["Dhcp4"]["client-classes"]}
    assert classes["bootpack-bios-ipxe"]["boot-file-name"] == "pxelinux-ipxe.0"
    assert not any(path.startswith("ipxe/") for path in render_loader_configs(spec, site))


def test_uefi_pxe_gets_shim_in_server_mode_and_ipxe_in_proxy_mode() -> None:
    """Debian's GRUB cannot boot behind a proxy DHCP, iPXE can; shim boots with Secure Boot on."""
    server = render_dnsmasq(*lab(chains=IPXE))
    assert "tag-if=set:bp-uefi,tag:bp-arch-uefi," in server
    proxy = render_dnsmasq(*lab("proxy", chains=IPXE))
    assert "tag-if=set:bp-ipxe,tag:bp-arch-uefi,tag:!bp-forced,tag:!bp-ipxe-script\n" in proxy
    assert "dhcp-boot=tag:bp-ipxe,snponly.efi,,10.0.2.2\n" in proxy
    assert "dhcp-boot=tag:bp-ipxe-script,http://10.0.2.2/ipxe/boot.ipxe\n" in proxy
    only_ipxe = render_isc(*lab(chains=("bios", "ipxe")))
    assert "bootx64.efi" not in only_ipxe and 'filename "snponly.efi";' in only_ipxe


def test_a_host_forced_to_ipxe_gets_the_binary_then_the_script() -> None:
    isc = render_isc(*lab(chains=IPXE, force="ipxe"))
    hw = "hardware = 01:52:54:00:00:00:02"
    assert (f'  if exists user-class and option user-class = "iPXE" and ({hw}) {{\n'
            '    filename "http://10.0.2.2/ipxe/boot.ipxe";\n'
            f'  }} elsif ({hw}) {{\n    filename "snponly.efi";\n') in isc
    kea = {c["name"]: c for c in json.loads(render_kea(*lab(chains=IPXE, force="ipxe")))["Dhcp4"][
        "client-classes"]}
    assert "pkt4.mac == 0x525400000002" in kea["bootpack-ipxe-script"]["test"]
    assert kea["bootpack-ipxe"]["boot-file-name"] == "snponly.efi"
    dnsmasq = render_dnsmasq(*lab(chains=IPXE, force="ipxe"))
    assert "dhcp-mac=set:bp-force-ipxe,52:54:00:00:00:02\n" in dnsmasq
