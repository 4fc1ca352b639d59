"""One module per AWS resource type or relationship, grouped by tier (network, access, identity,
compute, edge, storage). Importing this package imports every module below it, and each module
registers its step classes with ``@register``: adding a resource is adding a file, never editing a
list."""

import importlib
import pkgutil

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)
