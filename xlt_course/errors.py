"""Exceptions the course raises, each naming what is wrong and how to fix it."""


class XltCourseError(Exception):
    """Base class for every error the course raises on purpose."""


class DataError(XltCourseError):
    """A data artefact is missing, truncated, corrupt or of the wrong shape.

    The message names the file and the command that fixes it.
    """


class ResourceMissingError(DataError):
    """An installed package or Debian package that an artefact is built from is absent."""
