"""[loaders]: which chains a bundle carries, and a host forcing one."""

from __future__ import annotations

import pytest

from bootpack.errors import BootpackError
from bootpack.spec import parse_spec
from tests.support.specs import lab_data


def test_default_is_bios_and_uefi() -> None:
    assert parse_spec(lab_data()).loaders.chains == ["bios", "uefi"]


@pytest.mark.parametrize("chains", [[], ["bios", "bios"], ["arm64"], ["uefi\nfilename x"]])
def test_bad_chain_lists_are_refused(chains: list[str]) -> None:
    data = lab_data()
    data["loaders"] = {"chains": chains}
    with pytest.raises(BootpackError):
        parse_spec(data)


def test_host_may_force_a_chain_the_bundle_carries() -> None:
    data = lab_data()
    data["hosts"][0]["chain"] = "uefi"
    assert parse_spec(data).hosts[0].chain == "uefi"
    data["loaders"] = {"chains": ["bios"]}
    with pytest.raises(BootpackError, match=r"hosts\[0\].chain: 'uefi' is not in loaders.chains"):
        parse_spec(data)
    data["hosts"][0]["chain"] = "efi"
    with pytest.raises(BootpackError):
        parse_spec(data)
