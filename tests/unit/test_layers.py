"""Every module of the package has its place in the layers that `lint-imports` enforces
(pyproject.toml): a new top-level module is placed there, not left outside the contract."""

import pkgutil
import tomllib

import pgnotify
from tests.helpers.support import ROOT


def test_every_top_level_module_is_in_the_layers_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [contract["layers"] for contract in config["tool"]["importlinter"]["contracts"]
                 if contract["type"] == "layers" and "containers" not in contract]
    layered = [name.strip() for layer in layers for name in layer.split("|")]
    modules = {f"pgnotify.{module.name}" for module in pkgutil.iter_modules(pgnotify.__path__)}
    assert sorted(layered) == sorted(modules)
