"""One module per AWS resource type or relationship. Importing this package imports every module
in it, and each module registers its step classes with ``@register``: adding a resource is adding
a file, never editing a list."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
