"""The one exception type the CLI turns into a clear message and exit status 2."""


class BootpackError(Exception):
    """A problem the user can fix: bad spec, missing file, missing package, unreachable daemon.

    The message must name the culprit and say what to do; the CLI prints it without a traceback.
    """
