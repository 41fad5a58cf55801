"""Exceptions raised on bad input. Each carries a one-line message meant to be shown as is."""


class NasAttnError(ValueError):
    """Base class of the errors that the command line reports in one line with exit status 2."""


class ModuleConfigError(NasAttnError):
    """An attention module cannot be created as asked (unknown name, groups that do not divide channels)."""


class ArchError(NasAttnError):
    """An arch is invalid; the message names the placement and the reason."""


class SpaceError(NasAttnError):
    """A search-space file is malformed; the message names the file, the key and the reason."""


class DataError(NasAttnError):
    """A dataset cannot be found or read."""
