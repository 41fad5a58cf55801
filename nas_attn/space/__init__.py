"""Search spaces: ``search_spaces/*.yaml`` → validated :class:`SearchSpace` → an Optuna encoding.

- :mod:`~nas_attn.space.schema`: the file format (pydantic models).
- :mod:`~nas_attn.space.space`: compiling a file against the backbone and the module registry.
- :mod:`~nas_attn.space.encoding`: how Optuna's samplers see the choices.
"""

from nas_attn.space.files import known_spaces, resolve_space_path
from nas_attn.space.schema import OBJECTIVES, OPS, SAMPLERS, SpaceFile
from nas_attn.space.space import NONE, PositionChoice, RunSettings, SearchSpace, Violation, load_space

__all__ = ["NONE", "OBJECTIVES", "OPS", "SAMPLERS", "PositionChoice", "RunSettings", "SearchSpace", "SpaceFile",
           "Violation", "known_spaces", "load_space", "resolve_space_path"]
