"""Attention modules and their registry: ``create(name, channels, groups=None, **options)``.

Importing this package registers the built-in modules by metadata (``catalog``) without importing torch.
"""

from nas_attn.modules import catalog  # noqa: F401 (registers the built-in modules)
from nas_attn.modules.registry import (
    ModuleEntry,
    check_options,
    check_positions,
    create,
    get_entry,
    list_modules,
    register_module,
    resolve_groups,
)

__all__ = ["ModuleEntry", "check_options", "check_positions", "create", "get_entry", "list_modules",
           "register_module", "resolve_groups"]
