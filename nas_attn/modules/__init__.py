"""Attention modules and their registry: ``create(name, channels, groups=None, **kwargs)``."""

from nas_attn.modules import bam, csm, lgam, light_attention, timm_modules, ulsam  # noqa: F401 (register)
from nas_attn.modules.registry import (
    ModuleEntry,
    create,
    get_entry,
    list_modules,
    register_module,
    resolve_groups,
)

__all__ = ["ModuleEntry", "create", "get_entry", "list_modules", "register_module", "resolve_groups"]
