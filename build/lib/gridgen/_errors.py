"""Exceptions of the grid generator; the CLI and the app map them to one-line messages."""


class GridGenError(Exception):
    """Base class of all grid-generator errors."""


class InputDataError(GridGenError, ValueError):
    """The OSM input (file, place, bbox) is missing, unreadable or holds nothing usable."""


class ConfigError(GridGenError, ValueError):
    """An option is out of range or inconsistent with the others."""


class GridValidationError(GridGenError, RuntimeError):
    """The generated grid could not be made free of limit violations."""
