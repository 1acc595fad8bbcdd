"""Optional dependencies, imported only by the part that uses them.

`require("channels_redis", "redis", "the Redis channel layer")` imports the module or raises
MissingExtraError, whose one line names the extra to install (pyproject.toml declares the extras).
"""

import importlib
import importlib.util

from .exceptions import MissingExtraError


def require(module: str, extra: str, feature: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name != module and not module.startswith(error.name + "."):
            raise  # the package is there but something it imports is broken: say that, not "install"
        raise MissingExtraError(feature, module, extra) from error


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
