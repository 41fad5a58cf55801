"""Search spaces: ``search_spaces/*.yaml`` → validated :class:`SearchSpace` → Optuna define-by-run.

A space names the backbone, the dataset, the positions open to search with the modules, groups and ops
allowed at each, the objectives and constraints, the sampler, the budget, per-trial resources, the training
recipe and optional ASHA early stopping. Every malformed file is rejected before anything runs with a
:class:`SpaceError` naming the file, the key and the reason.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from nas_attn.arch import Arch, Placement
from nas_attn.backbones import OPS, get_backbone
from nas_attn.data import DATASETS
from nas_attn.errors import NasAttnError, SpaceError
from nas_attn.modules import get_entry, list_modules
from nas_attn.recipe import Recipe

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
NONE = "none"
#: objective name → Optuna direction
OBJECTIVES = {"val_acc": "maximize", "flops": "minimize", "params": "minimize"}
SAMPLERS = ("nsga2", "tpe", "random", "gp")


def _value_type(default: Any) -> Any:
    """The YAML types accepted for a recipe field, from its default (an integer is a valid float)."""
    return (int, float) if isinstance(default, float) else type(default)


# Schema: key → (expected type(s), default). A nested dict schema is given as a dict.
_SCHEMA: dict[str, Any] = {
    "name": (str, None),
    "description": (str, ""),
    "imports": (list, []),
    "backbone": {"name": (str, None), "width": ((int, float), 1.0), "small_input": (bool, False)},
    "dataset": {"name": (str, "fashion_mnist"), "input_size": (int, None), "val_fraction": (float, 0.1),
                "train_subset": ((int, type(None)), None), "val_subset": ((int, type(None)), None)},
    "search": {"positions": ((list, str), None), "modules": (list, None), "groups": (list, [1, 2, 4, 8, 16]),
               "ops": (list, ["insert"]), "strict_ops": (bool, False), "overrides": (dict, {}),
               "max_placements": ((int, type(None)), None), "include_vanilla": (bool, True)},
    "objectives": (list, ["val_acc", "flops"]),
    "constraints": {"max_flops": ((int, float, type(None)), None), "max_params": ((int, float, type(None)), None)},
    "sampler": {"name": (str, "nsga2"), "seed": (int, 0), "population_size": ((int, type(None)), None)},
    "budget": {"trials": (int, 32), "concurrency": ((int, type(None)), None)},
    "resources": {"cpu": ((int, float), 1), "gpu": ((int, float), 0.25)},
    "train": {f.name: (_value_type(f.default), f.default) for f in fields(Recipe)},
    "early_stopping": ((dict, type(None)), None),
    "cpu_budget": ((dict, type(None)), None),
}
_OVERRIDE_KEYS = {"modules", "groups", "ops"}
_ASHA_KEYS = {"scheduler": (str, "asha"), "grace_period": (int, 1), "reduction_factor": ((int, float), 2)}
_CPU_BUDGET_KEYS = {"trials": int, "epochs": int, "train_subset": int, "val_subset": int, "width": (int, float),
                    "batch_size": int, "lr": (int, float), "concurrency": int}


@dataclass(frozen=True)
class PositionChoice:
    """What the search may choose at one position."""

    index: int
    channels: int
    side: int
    modules: tuple[str, ...]
    groups: tuple[int, ...]
    ops: tuple[str, ...]


@dataclass
class SearchSpace:
    """A validated search space; :meth:`suggest` is its Optuna define-by-run function."""

    name: str
    path: Path
    sha256: str
    description: str
    backbone: str
    width: float
    small_input: bool
    dataset: str
    input_size: int
    in_chans: int
    num_classes: int
    val_fraction: float
    train_subset: int | None
    val_subset: int | None
    positions: list[PositionChoice]
    objectives: list[str]
    max_flops: float | None
    max_params: float | None
    max_placements: int | None
    include_vanilla: bool
    sampler: str
    sampler_seed: int
    population_size: int | None
    trials: int
    concurrency: int | None
    cpus_per_trial: float
    gpus_per_trial: float
    recipe: Recipe
    asha: dict[str, Any] | None
    cpu_budget: dict[str, Any] | None
    imports: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def base_arch(self) -> Arch:
        return Arch(self.backbone, width=self.width, num_classes=self.num_classes, input_size=self.input_size,
                    in_chans=self.in_chans, small_input=self.small_input)

    def suggest(self, trial) -> dict[str, Any]:
        """Optuna define-by-run: a module per position; its groups and op only when a module is chosen."""
        params: dict[str, Any] = {}
        for pc in self.positions:
            module = trial.suggest_categorical(f"p{pc.index}.module", list(pc.modules))
            params[f"p{pc.index}.module"] = module
            if module == NONE:
                continue
            if get_entry(module).takes_groups and len(pc.groups) > 1:
                params[f"p{pc.index}.groups"] = trial.suggest_categorical(f"p{pc.index}.groups", list(pc.groups))
            if len(pc.ops) > 1:
                params[f"p{pc.index}.op"] = trial.suggest_categorical(f"p{pc.index}.op", list(pc.ops))
        return {"arch": self.arch_from_params(params).to_json()}

    def arch_from_params(self, params: dict[str, Any]) -> Arch:
        """The arch that Optuna parameters (``p{k}.module`` / ``.groups`` / ``.op``) describe."""
        placements = []
        for pc in self.positions:
            module = params.get(f"p{pc.index}.module", NONE)
            if module == NONE:
                continue
            groups = None
            if get_entry(module).takes_groups:
                groups = params.get(f"p{pc.index}.groups", pc.groups[0])
            placements.append(Placement(pc.index, module, params.get(f"p{pc.index}.op", pc.ops[0]), groups))
        return replace(self.base_arch(), placements=placements)

    def vanilla_params(self) -> dict[str, Any]:
        return {f"p{pc.index}.module": NONE for pc in self.positions if NONE in pc.modules}

    def violations(self, arch: Arch, cost: dict[str, int]) -> str | None:
        """Why ``arch`` breaks a constraint (checked before training), or ``None``."""
        if self.max_flops is not None and cost["flops"] > self.max_flops:
            return f"flops {cost['flops'] / 1e6:.2f}M > max_flops {self.max_flops / 1e6:.2f}M"
        if self.max_params is not None and cost["params"] > self.max_params:
            return f"params {cost['params']} > max_params {int(self.max_params)}"
        if self.max_placements is not None and len(arch.placements) > self.max_placements:
            return f"{len(arch.placements)} placements > max_placements {self.max_placements}"
        return None

    def summary(self) -> str:
        pos = f"{self.positions[0].index}-{self.positions[-1].index}" if self.positions else "-"
        mods = sorted({m for p in self.positions for m in p.modules})
        return (f"space {self.name}: {self.backbone} (width {self.width}, input {self.input_size}, small_input "
                f"{self.small_input}), positions {pos}, modules {', '.join(mods)}; objectives "
                f"{', '.join(self.objectives)}; sampler {self.sampler}; {self.trials} trials x "
                f"{self.recipe.epochs} epochs")


def resolve_space_path(name_or_path: str) -> Path:
    """A space given by name (``search_spaces/NAME.yaml``) or by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SpaceError(f"{p}: no such space file")
        return p
    folders = [Path("search_spaces"), SPACES_DIR]  # the working directory's, then the repository's
    for folder in folders:
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({f.stem for folder in folders for f in folder.glob("*.yaml")})
    raise SpaceError(f"unknown space {name_or_path!r} (known: {', '.join(known)}; or give a .yaml path)")


def load_space(name_or_path: str, num_classes: int = 10, in_chans: int | None = None,
               dataset: str | None = None) -> SearchSpace:
    """Load and validate a space file. ``num_classes``/``in_chans`` come from the dataset; ``dataset``
    replaces the file's ``dataset.name`` (the ``--dataset`` flag).

    Raises:
        SpaceError: ``<file>: <key>: <reason>`` for the first problem found.
    """
    path = resolve_space_path(name_or_path)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping of keys at the top level")
    try:
        if dataset is not None:
            raw = {**raw, "dataset": {**(raw.get("dataset") or {}), "name": dataset}}
        return _compile(raw, path, hashlib.sha256(text.encode()).hexdigest(), num_classes, in_chans)
    except SpaceError:
        raise
    except NasAttnError as exc:
        raise SpaceError(f"{path}: {exc}") from None


def _typename(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    names = {"NoneType": "null", "str": "string", "int": "integer", "float": "number", "bool": "true/false",
             "list": "list", "dict": "mapping"}
    return " or ".join(names.get(x.__name__, x.__name__) for x in ts)


def _check(path: Path, key: str, value: Any, types) -> Any:
    ts = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in ts:  # YAML true is not a number
        raise SpaceError(f"{path}: {key}: expected {_typename(types)}, got {value!r}")
    if float in ts and isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, ts):
        raise SpaceError(f"{path}: {key}: expected {_typename(types)}, got {value!r}")
    return value


def _section(path: Path, raw: dict, key: str, schema: dict) -> dict[str, Any]:
    given = raw.get(key) or {}
    if not isinstance(given, dict):
        raise SpaceError(f"{path}: {key}: expected a mapping, got {given!r}")
    unknown = set(given) - set(schema)
    if unknown:
        raise SpaceError(f"{path}: {key}.{sorted(unknown)[0]}: unknown key (known: {', '.join(schema)})")
    out = {}
    for k, (types, default) in schema.items():
        out[k] = _check(path, f"{key}.{k}", given[k], types) if k in given else default
    return out


def _list_of(path: Path, key: str, value: list, item_type, allowed=None) -> list:
    if not value:
        raise SpaceError(f"{path}: {key}: empty list (give at least one choice)")
    for v in value:
        _check(path, f"{key}", v, item_type)
        if allowed is not None and v not in allowed:
            raise SpaceError(f"{path}: {key}: unknown value {v!r} (one of {', '.join(map(str, allowed))})")
    if len(set(value)) != len(value):
        raise SpaceError(f"{path}: {key}: repeated choices in {value}")
    return value


def _positions_list(path: Path, spec) -> list[int]:
    if isinstance(spec, str):
        try:
            lo, hi = (int(v) for v in spec.split("-"))
        except ValueError:
            raise SpaceError(f"{path}: search.positions: expected a list or a range like '8-17', "
                             f"got {spec!r}") from None
        return list(range(lo, hi + 1))
    return _list_of(path, "search.positions", spec, int)


def _compile(raw: dict, path: Path, sha: str, num_classes: int, in_chans: int | None) -> SearchSpace:
    unknown = set(raw) - set(_SCHEMA)
    if unknown:
        raise SpaceError(f"{path}: {sorted(unknown)[0]}: unknown key (known: {', '.join(_SCHEMA)})")
    top = {k: _check(path, k, raw[k], v[0]) if k in raw else v[1] for k, v in _SCHEMA.items() if isinstance(v, tuple)}
    for mod in top["imports"]:  # modules that register extra attention modules
        try:
            importlib.import_module(_check(path, "imports", mod, str))
        except ImportError as exc:
            raise SpaceError(f"{path}: imports: cannot import {mod!r} ({exc})") from None
    bb = _section(path, raw, "backbone", _SCHEMA["backbone"])
    ds = _section(path, raw, "dataset", _SCHEMA["dataset"])
    sr = _section(path, raw, "search", _SCHEMA["search"])
    cons = _section(path, raw, "constraints", _SCHEMA["constraints"])
    smp = _section(path, raw, "sampler", _SCHEMA["sampler"])
    bud = _section(path, raw, "budget", _SCHEMA["budget"])
    res = _section(path, raw, "resources", _SCHEMA["resources"])
    tr = _section(path, raw, "train", _SCHEMA["train"])
    if bb["name"] is None:
        raise SpaceError(f"{path}: backbone.name: missing")
    family = get_backbone(bb["name"])
    if ds["name"] not in DATASETS:
        raise SpaceError(f"{path}: dataset.name: unknown dataset {ds['name']!r} (one of {', '.join(DATASETS)})")
    if ds["input_size"] is None:
        raise SpaceError(f"{path}: dataset.input_size: missing")
    if not 0 < ds["val_fraction"] < 1:
        raise SpaceError(f"{path}: dataset.val_fraction: must be between 0 and 1, got {ds['val_fraction']}")
    chans = in_chans or (1 if ds["name"] == "fashion_mnist" else 3)
    base = Arch(family.name, width=float(bb["width"]), num_classes=num_classes, input_size=ds["input_size"],
                in_chans=chans, small_input=bb["small_input"])
    try:
        by_index = {p.index: p for p in base.positions()}
    except NasAttnError as exc:
        raise SpaceError(f"{path}: backbone: {exc}") from None

    if sr["positions"] is None or sr["modules"] is None:
        raise SpaceError(f"{path}: search.{'positions' if sr['positions'] is None else 'modules'}: missing")
    known_modules = [NONE, *list_modules()]
    defaults = {
        "modules": _list_of(path, "search.modules", sr["modules"], str, known_modules),
        "groups": _list_of(path, "search.groups", sr["groups"], int),
        "ops": _list_of(path, "search.ops", sr["ops"], str, OPS),
    }
    overrides = {}
    for k, ov in sr["overrides"].items():
        if not isinstance(k, int) or not isinstance(ov, dict):
            raise SpaceError(f"{path}: search.overrides.{k}: expected 'POSITION: {{modules/groups/ops: [...]}}'")
        bad = set(ov) - _OVERRIDE_KEYS
        if bad:
            raise SpaceError(f"{path}: search.overrides.{k}.{sorted(bad)[0]}: unknown key "
                             f"(known: modules, groups, ops)")
        overrides[k] = ov
    warnings: list[str] = []
    positions = []
    indices = _positions_list(path, sr["positions"])
    for k in list(overrides):
        if k not in indices:
            raise SpaceError(f"{path}: search.overrides.{k}: position {k} is not in search.positions")
    for k in indices:
        pos = by_index.get(k)
        if pos is None or not pos.ops:
            legal = [p.index for p in by_index.values() if p.ops]
            raise SpaceError(f"{path}: search.positions: position {k} out of range for {family.name} "
                             f"({legal[0]}-{legal[-1]})")
        ov = overrides.get(k, {})
        key = f"search.overrides.{k}" if ov else "search"
        modules = _list_of(path, f"{key}.modules", ov["modules"], str, known_modules) if "modules" in ov \
            else defaults["modules"]
        groups = _list_of(path, f"{key}.groups", ov["groups"], int) if "groups" in ov else defaults["groups"]
        ops = _list_of(path, f"{key}.ops", ov["ops"], str, OPS) if "ops" in ov else defaults["ops"]
        legal_ops = [op for op in ops if op in pos.ops]
        if len(legal_ops) < len(ops):
            dropped = [op for op in ops if op not in pos.ops]
            msg = f"position {k} ({pos.kind}, {pos.in_channels}->{pos.out_channels}): op {', '.join(dropped)} not legal"
            if sr["strict_ops"]:
                raise SpaceError(f"{path}: {key}.ops: {msg} (strict_ops is set)")
            warnings.append(f"{msg}, dropped")
        real = [m for m in modules if m != NONE]
        if real and not legal_ops:
            raise SpaceError(f"{path}: {key}.ops: no legal op at position {k} (legal there: {', '.join(pos.ops)})")
        if any(get_entry(m).takes_groups for m in real):
            bad = [g for g in groups if g < 1 or pos.out_channels % g]
            if bad:
                raise SpaceError(f"{path}: {key}.groups: groups {bad} do not divide the {pos.out_channels} "
                                 f"channels of position {k}")
        for m in real:  # the modules' own limit on h*w (csm, sam, nonlocal), from the registry
            limit = get_entry(m).max_positions
            if limit is not None and pos.side ** 2 > limit:
                raise SpaceError(f"{path}: {key}.modules: {m} at position {k} would attend over {pos.side}x"
                                 f"{pos.side} = {pos.side ** 2} positions (limit {limit})")
        positions.append(PositionChoice(k, pos.out_channels, pos.side, tuple(modules), tuple(groups),
                                        tuple(legal_ops or ["insert"])))

    objectives = _list_of(path, "objectives", top["objectives"], str, list(OBJECTIVES))
    if "val_acc" not in objectives or len(objectives) < 2:
        raise SpaceError(f"{path}: objectives: need val_acc and at least one of flops, params (got {objectives})")
    if smp["name"] not in SAMPLERS:
        raise SpaceError(f"{path}: sampler.name: unknown sampler {smp['name']!r} (one of {', '.join(SAMPLERS)})")
    if bud["trials"] < 1:
        raise SpaceError(f"{path}: budget.trials: must be >= 1")
    try:
        recipe = Recipe(**tr)
    except ValueError as exc:  # pydantic's ValidationError: the first problem, on one line
        err = exc.errors()[0]
        raise SpaceError(f"{path}: train.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    asha = _asha(path, top["early_stopping"])
    cpu_budget = _cpu_budget(path, top["cpu_budget"])
    if cpu_budget and "width" in cpu_budget and cpu_budget["width"] != bb["width"]:
        # the CPU budget runs the same space at another width: every choice must be legal there too
        narrower = {**raw, "backbone": {**raw["backbone"], "width": cpu_budget["width"]}, "cpu_budget": None}
        try:
            _compile(narrower, path, sha, num_classes, in_chans)
        except SpaceError as exc:
            raise SpaceError(f"{exc} (at cpu_budget.width {cpu_budget['width']})") from None
    if res["cpu"] <= 0 or res["gpu"] < 0:
        raise SpaceError(f"{path}: resources: cpu must be > 0 and gpu >= 0")
    return SearchSpace(
        name=top["name"] or path.stem, path=path.resolve(), sha256=sha, description=top["description"],
        backbone=family.name, width=float(bb["width"]), small_input=bb["small_input"], dataset=ds["name"],
        input_size=ds["input_size"], in_chans=chans, num_classes=num_classes, val_fraction=ds["val_fraction"],
        train_subset=ds["train_subset"], val_subset=ds["val_subset"], positions=positions, objectives=objectives,
        max_flops=cons["max_flops"], max_params=cons["max_params"], max_placements=sr["max_placements"],
        include_vanilla=sr["include_vanilla"], sampler=smp["name"], sampler_seed=smp["seed"],
        population_size=smp["population_size"], trials=bud["trials"], concurrency=bud["concurrency"],
        cpus_per_trial=float(res["cpu"]), gpus_per_trial=float(res["gpu"]), recipe=recipe, asha=asha,
        cpu_budget=cpu_budget, imports=list(top["imports"]), warnings=warnings,
    )


def _asha(path: Path, spec: dict | None) -> dict | None:
    if spec is None:
        return None
    bad = set(spec) - set(_ASHA_KEYS)
    if bad:
        raise SpaceError(f"{path}: early_stopping.{sorted(bad)[0]}: unknown key (known: {', '.join(_ASHA_KEYS)})")
    out = {k: _check(path, f"early_stopping.{k}", spec.get(k, d), t) for k, (t, d) in _ASHA_KEYS.items()}
    if out["scheduler"] != "asha":
        raise SpaceError(f"{path}: early_stopping.scheduler: only 'asha' is supported, got {out['scheduler']!r}")
    if out["grace_period"] < 1 or out["reduction_factor"] <= 1:
        raise SpaceError(f"{path}: early_stopping: grace_period must be >= 1 and reduction_factor > 1")
    return out


def _cpu_budget(path: Path, spec: dict | None) -> dict | None:
    if spec is None:
        return None
    for k, v in spec.items():
        if k not in _CPU_BUDGET_KEYS:
            raise SpaceError(f"{path}: cpu_budget.{k}: unknown key (known: {', '.join(_CPU_BUDGET_KEYS)})")
        _check(path, f"cpu_budget.{k}", v, _CPU_BUDGET_KEYS[k])
        if v <= 0:
            raise SpaceError(f"{path}: cpu_budget.{k}: must be > 0")
    return dict(spec)
