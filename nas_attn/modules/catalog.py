"""The built-in attention modules, registered by metadata only (``docs/modules.md`` has their equations).

Each constructor is named as ``"package.module:function"`` and imported on first use; a test checks that every
entry's ``options`` are its constructor's keyword arguments.
"""

from __future__ import annotations

from nas_attn.modules.registry import ModuleEntry, add_entry

#: the h·w limit of the modules whose spatial attention is an (h·w)×(h·w) matrix: a 32×32 map
QUADRATIC_MAX_POSITIONS = 1024

_M = "nas_attn.modules."
BUILTIN = (
    ModuleEntry("ulsam", _M + "ulsam:ulsam", True, 4, "ULSAM eq. 2-4", options=()),
    ModuleEntry("ulsam_official", _M + "ulsam:ulsam_official", True, 4, "ULSAM public code", options=()),
    ModuleEntry("la", _M + "light_attention:light_attention", source="LADNet III.B",
                options=("reduction", "power")),
    ModuleEntry("lgam", _M + "lgam:lgam", True, 4, "LGAM section 2", options=("reduction",)),
    ModuleEntry("sge", _M + "sge:sge", True, 64, "Li, Hu, Yang 2019 (SGE)", options=()),
    ModuleEntry("cam", _M + "csm:cam", source="CSM section II (channel part)", options=("reduction",)),
    ModuleEntry("sam", _M + "csm:sam", source="CSM section II (spatial part)",
                max_positions=QUADRATIC_MAX_POSITIONS, options=("key_reduction",)),
    ModuleEntry("csm", _M + "csm:csm", source="CSM section II", max_positions=QUADRATIC_MAX_POSITIONS,
                options=("reduction", "key_reduction", "order")),
    ModuleEntry("csm_spatial_first", _M + "csm:csm_spatial_first", source="CSM Fig. 6 (spatial first)",
                max_positions=QUADRATIC_MAX_POSITIONS, options=("reduction", "key_reduction")),
    ModuleEntry("nonlocal", _M + "nonlocal_block:nonlocal_block", source="Wang et al. CVPR 2018 (timm)",
                max_positions=QUADRATIC_MAX_POSITIONS, options=()),
    ModuleEntry("bam", _M + "bam:bam", source="Park et al. BMVC 2018", options=("reduction", "dilation")),
    ModuleEntry("se", _M + "timm_modules:se", source="timm", options=("rd_ratio",)),
    ModuleEntry("cbam", _M + "timm_modules:cbam", source="timm", options=("rd_ratio", "spatial_kernel_size")),
    ModuleEntry("eca", _M + "timm_modules:eca", source="timm", options=("gamma", "beta")),
    ModuleEntry("gc", _M + "timm_modules:gc", source="timm", options=("rd_ratio",)),
)

for _entry in BUILTIN:
    add_entry(_entry)
