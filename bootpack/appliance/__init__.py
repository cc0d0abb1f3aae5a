"""The boot appliance: serve a bundle (DHCP, TFTP, HTTP, NFS), check its health, bake it into an
image. Pure rendering in `serve`, processes in `supervisor`, probes in `health` and `dhcp_probe`,
the Docker image in `image`; `run` ties them together for `bootpack serve`."""

