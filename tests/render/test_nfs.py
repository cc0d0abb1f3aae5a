from __future__ import annotations

from bootpack.render.nfs import render_exports, render_ganesha
from bootpack.spec import parse_spec
from bootpack.spec.site import Site
from tests.support.specs import lab_data


def test_exports_are_read_only_and_limited_to_the_subnet() -> None:
    data = lab_data()
    data["entries"][0]["root"] = "nfs"
    data["entries"].append({"name": "own", "image": "kdev", "root": "nfs", "nfs_path": "/storage/r"})
    data["entries"].append({"name": "again", "image": "kdev", "root": "nfs"})
    spec = parse_spec(data)
    site = Site.from_spec(spec)
    exports = render_exports(spec, site).splitlines()[1:]
    assert exports == [
        "/srv/bootpack/roots/kdev 10.0.2.0/24(ro,no_root_squash,no_subtree_check,async)",
        "/storage/r 10.0.2.0/24(ro,no_root_squash,no_subtree_check,async)",
    ]
    ganesha = render_ganesha(spec, site)
    assert ganesha.count("EXPORT {") == 2
    assert 'Path = "/srv/bootpack/roots/kdev";\n    Pseudo = "/srv/bootpack/roots/kdev";' in ganesha
    # Ganesha 4.3 refuses a quoted client list ("Expected a client, got a double quoted string").
    assert "CLIENT { Clients = 10.0.2.0/24; Access_Type = RO; }" in ganesha
    assert "Access_Type = None;" in ganesha  # nobody outside the subnet
