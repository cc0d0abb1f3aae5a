"""Writing values into configuration formats: one helper per format, used at the point of writing.

The spec's types already keep every value to one line of safe characters (bootpack.spec.model).
These helpers are the second line: they quote what a legal value may still contain (a `"` in a
menu title), and refuse what no quoting makes safe in that format (a newline, which would start a
new directive) with a BootpackError naming the value, so a value that reaches a renderer another
way (a `serve` flag, a future field) cannot become configuration either.
"""

from __future__ import annotations

import re

from ..errors import BootpackError
from ..spec.model import IPXE_UNSAFE

# Paths written unquoted (exports) or quoted (ganesha.conf, nginx.conf): letters, digits and a
# few punctuation marks that no format treats specially.
_PLAIN_PATH = re.compile(r"/?(?:[A-Za-z0-9._+-]+/?)*")


def _refuse(value: str, where: str, why: str) -> BootpackError:
    return BootpackError(f"{value!r} cannot be written into {where}: {why}")


# C0 controls, DEL, and the line breaks Python's splitlines also honours; one regex search, since
# every line of a 1,000-host bundle goes through here.
_CONTROL = re.compile("[\x00-\x1f\x7f\u0085\u2028\u2029]")


def one_line(value: str, where: str) -> str:
    """A value written as (part of) a line: no control characters, so it cannot end the line."""
    if _CONTROL.search(value):
        raise _refuse(value, where, "it contains a control character (a new line would start a "
                      "new directive)")
    return value


def pxelinux(value: str) -> str:
    """A pxelinux.cfg argument: the rest of the line, taken as it is (no quoting exists)."""
    return one_line(value, "a pxelinux config")


def grub(value: str) -> str:
    """A value in a grub.cfg (quoted there, but a new line would still start a new command)."""
    return one_line(value, "a GRUB config")


# iPXE ends a command at these words and drops the rest of a line from a word starting with "#";
# it decides on the raw word, before expanding settings (src/core/exec.c).
IPXE_TERMINATORS = ("||", "&&", ";")
IPXE_NOTHING = "${}"  # a setting with no name: iPXE expands it to nothing (settings.c)


def ipxe_words(value: str, where: str) -> str:
    """Words for an iPXE script line. iPXE has no quoting; a word it would read as syntax gets
    an empty setting in front (`${};`, `${}#1`), which hides it from the parser and expands to
    nothing, and one ending in a backslash (a line continuation) one behind. `${` itself can
    only be refused (iPXE expands again what an expansion yields): the spec's checks refuse it
    first. Runs of blanks become one space, as iPXE's own split-and-join does."""
    one_line(value, where)
    if IPXE_UNSAFE in value:
        raise _refuse(value, where, "iPXE would expand ${...} in it")
    words = []
    for word in value.split():
        if word in IPXE_TERMINATORS or word.startswith("#"):
            word = IPXE_NOTHING + word
        if word.endswith("\\"):
            word += IPXE_NOTHING
        words.append(word)
    return " ".join(words)


def dnsmasq_string(value: str) -> str:
    """A dnsmasq.conf quoted string: `\\` and `"` escaped; inside quotes `,` and `#` are text."""
    one_line(value, "dnsmasq.conf")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dnsmasq_word(value: str) -> str:
    """An unquoted dnsmasq.conf field: no separator, quote or comment character."""
    one_line(value, "dnsmasq.conf")
    if re.search(r'[\s,"#=\\]', value):
        raise _refuse(value, "dnsmasq.conf", "it contains a separator, quote or '#'")
    return value


def dhcpd_string(value: str) -> str:
    """An ISC dhcpd.conf string: `\\` and `"` escaped, inside double quotes."""
    one_line(value, "dhcpd.conf")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dhcpd_word(value: str) -> str:
    """An unquoted dhcpd.conf token (a host declaration's name)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise _refuse(value, "dhcpd.conf", "a host name there is letters, digits, '.', '_', '-'")
    return value


def _plain_path(value: str, where: str) -> str:
    one_line(value, where)
    if not value.startswith("/") or not _PLAIN_PATH.fullmatch(value):
        raise _refuse(value, where, "use an absolute path of letters, digits, '.', '_', '+', "
                      "'-' and '/' (no spaces, quotes or other punctuation)")
    return value


def exports_path(value: str) -> str:
    """A path at the start of an /etc/exports line (a space would start the client list)."""
    return _plain_path(value, "/etc/exports")


def ganesha_string(value: str) -> str:
    """A quoted ganesha.conf path."""
    return f'"{_plain_path(value, "ganesha.conf")}"'


def nginx_path(value: str) -> str:
    """A path argument in nginx.conf (`;`, `{`, `$` and spaces mean something there)."""
    return _plain_path(value, "nginx.conf")
