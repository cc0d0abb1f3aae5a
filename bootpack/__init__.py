"""bootpack: compile a declarative TOML spec into a network-boot bundle for diskless machines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bootpack")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"
