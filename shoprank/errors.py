"""The one exception hierarchy of shoprank.

Every message names the object, the offending value and the fix, so the CLI can print it as a
single line instead of a traceback.
"""


class ShoprankError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(ShoprankError):
    """A configuration file, option or environment variable is invalid."""


class InputError(ShoprankError):
    """An input file or its format cannot be read as asked."""


class MappingError(InputError):
    """A declarative column-mapping file is invalid."""


class WarehouseError(ShoprankError):
    """The DuckDB warehouse is missing, locked or not in the expected state."""


class BuildError(ShoprankError):
    """`dbt build` (or another dbt command) failed."""


class ContractError(ShoprankError):
    """A mart broke its Pandera contract after the build."""


class FeatureStoreError(ShoprankError):
    """The Feast feature store is missing, unreachable or inconsistent with its definitions."""


class ModelError(ShoprankError):
    """A model version is missing, or no longer matches the feature service it was trained on."""


def described(exc: BaseException) -> str:
    """An exception's kind and the first line of its message (a driver's may run for pages), for
    the one-line messages above: ``OperationalError: connection refused``."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
