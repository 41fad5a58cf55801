"""Model construction of each backbone family (imports torch; the specs in ``nas_attn.backbones`` do not)."""
