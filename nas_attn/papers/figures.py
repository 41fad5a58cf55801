"""Every table of the four source papers that prints params, FLOPs or accuracy, row by row, and what expresses it.

The papers are the project's seeds (``../shared/seeds/``; their text as ``.txt``):

- ULSAM: Saini, Jha, Das, Mittal, Mohan, "ULSAM: Ultra-Lightweight Subspace Attention Module for Compact
  Convolutional Neural Networks", WACV 2020 (``004_…``): Tables 1, 6-12 (Tables 2-5 print datasets and layouts).
- LGAM: Zhang, Li, Yang, "Image classification algorithm based on lightweight group attention module",
  Journal of Computer Applications 40(3), 2020, DOI 10.11772/j.issn.1001-9081.2019081425 (``002_…``, in
  Chinese): Tables 1, 3, 4 (Table 2 is the ResNet-18 layout with the attention modules).
- LADNet: Yang et al., "LADNet: An Ultra-Lightweight and Efficient Dilated Residual Network With
  Light-Attention Module", IEEE Access 9, 2021, DOI 10.1109/ACCESS.2021.3065338 (``000_…``): Tables 1-11.
- CSM: Yang, Zhang, "Research on classification algorithms for attention mechanism" (``003_…``): Tables I-III,
  accuracy only.
- The backbones the papers build on: the DRN authors' README (github.com/fyu/drn) and the papers the project's
  domain specification quotes (Xie et al. 2017, Zagoruyko & Komodakis 2016, Huang et al. 2017).

Nothing here is computed: a figure is what its source prints. A row's placement is one the paper states; where
the paper says it two ways or not at all, ``placement`` names the reading taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nas_attn.arch import Arch, Placement

_UNITS = {"K": 1e3, "M": 1e6, "G": 1e9}


@dataclass(frozen=True)
class Quantity:
    """A figure as printed (``"3.4M"``, ``"33K"``, ``"261.88M"``): its value and the precision it is given to."""

    text: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d+(\.\d+)?[KMG]", self.text):
            raise ValueError(f"not a printed figure like '3.4M': {self.text!r}")

    @property
    def value(self) -> float:
        return float(self.text[:-1]) * _UNITS[self.text[-1]]

    @property
    def step(self) -> float:
        """The unit of the last printed digit (0.1M for ``"3.4M"``)."""
        decimals = len(self.text[:-1].partition(".")[2])
        return 10.0 ** -decimals * _UNITS[self.text[-1]]

    def printed_as(self, value: float) -> bool:
        """``value`` rounded to this figure's precision prints as this figure."""
        return abs(value - self.value) <= self.step / 2 + 1e-9 * self.value


@dataclass(frozen=True)
class ModuleCase:
    """A module alone on a ``channels`` × ``side`` × ``side`` map (figures of modules, not networks)."""

    module: str
    channels: int
    side: int
    groups: int | None = None

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"module": self.module, "channels": self.channels, "side": self.side}
        if self.groups is not None:
            d["groups"] = self.groups
        return d


@dataclass(frozen=True)
class Figure:
    """One row of a paper's table: the printed figures, where they are printed, and what expresses them.

    Attributes:
        id: the row's stable, shell-safe name (``ULSAM-T7-r2``): ``PAPER-Tn-rK``, K counting the table's rows.
        paper: ULSAM, LGAM, LADNet, CSM, or ``backbone`` for the networks the papers build on.
        table: the table as the paper numbers it.
        row: the row's label as printed (with the position column where the table has one).
        source: where the row is printed.
        params, flops: the printed figures (``None`` where the row gives none).
        target: the arch or module that expresses the row; ``None`` if nothing here can (``reason`` says why).
        placement: the reading taken where the paper states the placement ambiguously or not at all.
        reason: why our figure differs by more than 1 %, or why no arch expresses the row.
        dataset: the dataset of the accuracy figures.
        top1, top5: the accuracy figures as printed (``err`` where the paper prints error rates; ``g=4 70.77``
            per group count where the table has a column per g).
    """

    paper: str
    table: str
    row: str
    source: str
    params: Quantity | None
    flops: Quantity | None
    target: Arch | ModuleCase | None
    placement: str = ""
    reason: str = ""
    id: str = ""
    dataset: str = ""
    top1: str = ""
    top5: str = ""


@dataclass(frozen=True)
class Unavailable:
    """A table whose figures could not be found here, and where they were looked for."""

    paper: str
    tables: str
    looked: tuple[str, ...] = field(default_factory=tuple)



# -- sources -----------------------------------------------------------------------------------------
ULSAM_SRC = "Saini et al., WACV 2020 (seeds 004_710fcb4d121ae93e)"
LGAM_SRC = "Zhang, Li, Yang, J. Computer Applications 40(3) 2020 (seeds 002_8fb30ab5c1286005)"
LADNET_SRC = "Yang et al., IEEE Access 9 2021 (seeds 000_d59be521e237def1)"
CSM_SRC = "Yang, Zhang (seeds 003_202a03932893bbca)"
DRN_README = "github.com/fyu/drn README.md (commit d75db2e), table 'Models'"
SPEC_QUOTE = "as quoted in the project's domain specification"


def _q(text: str | None) -> Quantity | None:
    return Quantity(text) if text else None


def _per_g(gs: tuple[int, ...], values: str) -> tuple[str, str]:
    """``"70.69 89.85 70.84 89.87"`` over g = 1, 2 -> (``"g=1 70.69; g=2 70.84"``, ``"g=1 89.85; g=2 89.87"``)."""
    v = values.split()
    return ("; ".join(f"g={g} {a}" for g, a in zip(gs, v[0::2], strict=True)),
            "; ".join(f"g={g} {b}" for g, b in zip(gs, v[1::2], strict=True)))


# -- ULSAM ---------------------------------------------------------------------------------------------
def _mv(backbone: str, *placements: tuple[int, str], width: float = 1.0, g: int = 4) -> Arch:
    """MobileNet at 224 px, 1000 classes (ImageNet-1K; the fine-grained tables print the same figures), with
    ULSAM at the given (layer, op) pairs; the paper's layer numbers are ours (Tables 3, 5; docs/numbering.md)."""
    return Arch(backbone, width=width, placements=[Placement(k, "ulsam", op, g) for k, op in placements])


_T7_POS = ((8, "insert"), (9, "insert"), (11, "substitute"))  # "(8:1, 9:1, 11)", Table 4
_T7_REASON = {
    1.0: ("the text's 0.3M saving taken from the rounded 4.2M: ours saves 265,728 (layer 11's 268,800 weights "
          "and BN, less three ULSAMs' 3,072) from 4,231,976; 3.97M prints 4.0M, 4.2M - 0.3M = 3.9M"),
    0.5: ("ours saves 67,328 (5.1 %) from 1,331,592 and prints 1.3M; the printed 1.2M needs a larger saving, "
          "which the paper does not explain"),
}
_MV2_POS = {"13": (13,), "16": (16,), "(9,13)": (9, 13), "(16,17)": (16, 17), "(14,17)": (14, 17),
            "(13,14,16,17)": (13, 14, 16, 17)}
_MV_BASE = ("the paper prints every network's params from its vanilla count rounded to 0.1M (MV1 4.2M, ours "
            "4,231,976; MV2 3.4M, ours torchvision's 3,504,872) less the layers it removes")
_T8_SAVING = ("the paper's 431.6K saving is the conv weights of blocks 14 and 17 alone (115,776 + 315,840); "
              "with their BN (6,656) and less ULSAM's 512 it is 437,760, ours; 3.4M - 431.6K = 2.97M, printed 2.96M")
_MV2_INSERT = "Table 6 prints MV2 + ULSAM (17:1) as 300.01M; the text says +0.015M, ours +0.016M on 300.77M"


def _ulsam_module(k: int, row: str, params: str, flops: str, target: ModuleCase | None, reason: str = "") -> Figure:
    return Figure("ULSAM", "Table 1", row, ULSAM_SRC, Quantity(params), Quantity(flops), target, reason=reason,
                  id=f"ULSAM-T1-r{k}")


ULSAM_T1 = (
    _ulsam_module(1, "Non-local", "524K", "102.76M", ModuleCase("nonlocal", 512, 14),
                  reason="the paper's 2m^2 hw leaves out the two (hw)^2 matrix products, which we count; biases "
                         "and BN add 0.4 % to the params"),
    _ulsam_module(2, "A2-Net", "66K", "12.85M", None,
                  reason="not expressible: A2-Net (Chen et al. 2018) is not a registered module"),
    _ulsam_module(3, "SE-Net", "33K", "0.03M", ModuleCase("se", 512, 14),
                  reason="timm's SE hidden width is 512/16 = 32 (a multiple of 8 already)"),
    _ulsam_module(4, "BAM", "84K", "16.49M", ModuleCase("bam", 512, 14),
                  reason="the paper's formula charges 4m^2/r, per position in the FLOPs; BAM has 3m^2/r (two MLP "
                         "layers and a 1x1 reduction), and only the 1x1 (m^2/r) runs per position"),
    _ulsam_module(5, "CBAM", "33K", "0.05M", ModuleCase("cbam", 512, 14),
                  reason="the paper counts CBAM's shared MLP once; it runs on the average- and the max-pooled vector"),
    _ulsam_module(6, "ULSAM (ours)", "1K", "0.2M", ModuleCase("ulsam", 512, 14, 4)),
)

_G5 = (1, 2, 4, 8, 16)
_G4 = (1, 4, 8, 16)


def _t6() -> tuple[Figure, ...]:
    rows = (("1.0 MV1 (vanilla)", "4.2M", "569M", _mv("mobilenetv1"), "70.65 89.76", ()),
            ("1.0 MV1 + ULSAM, 11:1", "4.2M", "569.2M", _mv("mobilenetv1", (11, "insert")),
             "70.69 89.85 70.84 89.87 70.77 89.91 70.59 89.83 70.89 89.74", _G5),
            ("1.0 MV1 + ULSAM, 12:1", "4.2M", "569.2M", _mv("mobilenetv1", (12, "insert")),
             "70.62 89.86 70.88 89.88 70.61 89.79 70.92 89.98 70.73 89.78", _G5),
            ("1.0 MV1 + ULSAM, 13:1", "4.2M", "569.1M", _mv("mobilenetv1", (13, "insert")),
             "70.63 89.60 70.85 89.97 70.86 89.85 70.74 89.81 70.82 90.05", _G5),
            ("MV2 (vanilla)", "3.4M", "300M", _mv("mobilenetv2"), "71.25 90.19", ()),
            ("MV2 + ULSAM, 17:1", "3.4M", "300.01M", _mv("mobilenetv2", (17, "insert")),
             "71.31 90.28 71.39 90.34 71.64 90.27 71.35 90.36 71.42 90.43", _G5))
    out = []
    for k, (row, p, f, arch, acc, gs) in enumerate(rows, 1):
        t1, t5 = _per_g(gs, acc) if gs else tuple(acc.split())
        reason = _MV_BASE if "MV2" in row else ""
        if "17:1" in row:
            reason += "; " + _MV2_INSERT
        if "13:1" in row:
            reason = ("the text gives 1.02K params for each of 11:1, 12:1, 13:1; after layer 13 (1024 channels) "
                      "ULSAM's 2m is 2,048 (ours)")
        out.append(Figure("ULSAM", "Table 6", row, ULSAM_SRC, Quantity(p), Quantity(f), arch, id=f"ULSAM-T6-r{k}",
                          dataset="ImageNet-1K", top1=t1, top5=t5, reason=reason,
                          placement="g = 4 counted (the module's figures do not depend on g, section 3)" if gs else ""))
    return tuple(out)


def _t7() -> tuple[Figure, ...]:
    rows = [("1.0 MV1 (vanilla)", 1.0, None, "4.2M", "569M", "70.65 89.76")]
    rows += [(f"1.0 MV1 + ULSAM (g = {g}), (8:1, 9:1, 11)", 1.0, g, "3.9M", "517M", acc)
             for g, acc in zip(_G5, ("69.92 89.25", "70.14 89.67", "70.43 89.92", "70.29 89.96", "70.04 89.98"),
                               strict=True)]
    rows += [("0.75 MV1 (vanilla)", 0.75, None, "2.6M", "325M", "67.48 88.00"),
             ("0.75 MV1 + ULSAM (g = 1), (8:1, 9:1, 11)", 0.75, 1, "2.4M", "296M", "67.98 88.06"),
             ("0.75 MV1 + ULSAM (g = 4), (8:1, 9:1, 11)", 0.75, 4, "2.4M", "296M", "67.81 88.43"),
             ("0.50 MV1 (vanilla)", 0.5, None, "1.3M", "149M", "63.22 84.63"),
             ("0.50 MV1 + ULSAM (g = 1), (8:1, 9:1, 11)", 0.5, 1, "1.2M", "136M", "63.42 84.70"),
             ("0.50 MV1 + ULSAM (g = 4), (8:1, 9:1, 11)", 0.5, 4, "1.2M", "136M", "63.25 84.81")]
    out = []
    for k, (row, w, g, p, f, acc) in enumerate(rows, 1):
        arch = _mv("mobilenetv1", *(_T7_POS if g else ()), width=w, g=g or 4)
        t1, t5 = acc.split()
        out.append(Figure("ULSAM", "Table 7", row, ULSAM_SRC, Quantity(p), Quantity(f), arch, id=f"ULSAM-T7-r{k}",
                          dataset="ImageNet-1K", top1=t1, top5=t5,
                          reason=_T7_REASON.get(w, "") if g else ""))
    return tuple(out)


def _t8() -> tuple[Figure, ...]:
    rows = (("MV2 (Vanilla)", (), "3.4M", "300M", "71.25 90.19"),
            ("MV2 + ULSAM (g = 4), (14, 17)", (14, 17), "2.96M", "261.88M", "71.52 90.25"),
            ("MV2 + ULSAM (g = 4), (16, 17)", (16, 17), "2.77M", "269.07M", "70.74 89.15"),
            ("MV2 + ULSAM (g = 4), (13, 14, 16, 17)", (13, 14, 16, 17), "2.54M", "223.77M", "69.72 87.79"))
    return tuple(
        Figure("ULSAM", "Table 8", row, ULSAM_SRC, Quantity(p), Quantity(f),
               _mv("mobilenetv2", *((k, "substitute") for k in pos)), id=f"ULSAM-T8-r{i}", dataset="ImageNet-1K",
               top1=acc.split()[0], top5=acc.split()[1],
               reason=_MV_BASE + ("; " + _T8_SAVING if pos == (14, 17) else ""))
        for i, (row, pos, p, f, acc) in enumerate(rows, 1))


def _t9() -> tuple[Figure, ...]:
    rows = (("MV1 (vanilla)", None, "81.31 95.24 62.88 86.05 62.20 89.66"),
            ("MV1 + ULSAM (g = 1), (8:1, 9:1, 11)", 1, "81.28 95.50 62.46 86.01 62.73 88.80"),
            ("MV1 + ULSAM (g = 4), (8:1, 9:1, 11)", 4, "81.30 95.37 63.52 85.80 63.06 89.58"),
            ("MV1 + ULSAM (g = 8), (8:1, 9:1, 11)", 8, "81.19 95.41 64.44 86.60 63.30 89.68"),
            ("MV1 + ULSAM (g = 16), (8:1, 9:1, 11)", 16, "81.62 95.33 63.47 84.90 62.75 89.35"))
    out = []
    for k, (row, g, acc) in enumerate(rows, 1):
        v = acc.split()
        sets = ("Food-101", "Birds", "Dogs")
        out.append(Figure("ULSAM", "Table 9", row, ULSAM_SRC, Quantity("3.9M" if g else "4.2M"),
                          Quantity("517M" if g else "569M"), _mv("mobilenetv1", *(_T7_POS if g else ()), g=g or 4),
                          id=f"ULSAM-T9-r{k}", dataset="Food-101, Birds, Dogs",
                          top1="; ".join(f"{s} {a}" for s, a in zip(sets, v[0::2], strict=True)),
                          top5="; ".join(f"{s} {b}" for s, b in zip(sets, v[1::2], strict=True)),
                          placement="counted at 1000 classes, as the paper's figures (those of Table 7)",
                          reason=_T7_REASON[1.0] if g else ""))
    return tuple(out)


_T10_12 = {
    "Table 10": ("Food-101", ("81.51 95.24",
                              "81.67 95.82 81.71 95.47 81.76 95.51 81.94 95.63",
                              "82.05 95.56 82.02 95.48 81.74 95.40 81.54 95.14",
                              "81.66 95.36 81.72 95.48 81.88 95.69 81.57 95.30",
                              "82.62 95.76 82.40 95.70 82.83 95.81 83.02 95.87",
                              "81.57 95.44 81.69 95.36 82.13 95.42 81.84 95.40",
                              "82.38 95.76 82.31 95.80 82.59 95.82 82.91 95.77")),
    "Table 11": ("Birds", ("62.94 84.92",
                           "63.01 85.17 63.05 83.48 63.11 84.79 64.32 84.62",
                           "63.98 86.22 64.44 84.87 65.03 85.63 63.47 84.45",
                           "63.43 85.55 63.47 84.41 63.10 84.96 62.21 84.62",
                           "64.19 85.46 64.57 84.92 64.61 85.25 65.03 85.64",
                           "63.35 85.29 64.70 86.98 65.41 86.01 63.31 84.92",
                           "64.11 86.77 64.15 84.92 63.22 85.21 63.98 85.12")),
    "Table 12": ("Dogs", ("61.81 86.88",
                          "61.63 86.58 61.80 86.68 62.05 87.30 60.31 86.63",
                          "62.60 88.20 62.90 87.30 63.01 88.00 61.70 87.40",
                          "61.73 87.08 61.73 86.86 62.66 87.86 62.08 88.11",
                          "63.28 88.86 64.30 89.58 64.10 88.58 62.48 88.41",
                          "62.86 87.88 62.50 88.03 64.33 89.31 61.67 87.18",
                          "63.20 88.84 63.53 88.63 62.75 88.18 62.50 88.56")),
}
_T10_FIGS = (("3.4M", "300M"), ("3.28M", "277.34M"), ("3.08M", "284.54M"), ("3.23M", "267.06M"),
             ("2.77M", "269.08M"), ("2.97M", "261.88M"), ("2.54M", "224.16M"))


def _t10_12() -> tuple[Figure, ...]:
    out = []
    for table, (dataset, accs) in _T10_12.items():
        n = table.split()[1]
        for k, (pos, (p, f), acc) in enumerate(zip(("-", *_MV2_POS), _T10_FIGS, accs, strict=True), 1):
            t1, t5 = _per_g(_G4, acc) if pos != "-" else tuple(acc.split())
            arch = _mv("mobilenetv2", *((j, "substitute") for j in _MV2_POS.get(pos, ())))
            reason = _MV_BASE
            out.append(Figure("ULSAM", table, "MV2 (vanilla)" if pos == "-" else f"MV2 + ULSAM, {pos}", ULSAM_SRC,
                              Quantity(p), Quantity(f), arch, id=f"ULSAM-T{n}-r{k}", dataset=dataset, top1=t1,
                              top5=t5, reason=reason,
                              placement="" if pos == "-" else "g = 4 counted (figures do not depend on g); the "
                              "position column lists substituted blocks (Table 5 numbering); 1000 classes as printed"))
    return tuple(out)


ULSAM_FIGURES = ULSAM_T1 + _t6() + _t7() + _t8() + _t9() + _t10_12()


# -- LGAM ------------------------------------------------------------------------------------------------
#: ResNet-18/34 and WRN-16-10 blocks ending each stage; ResNeXt-29's (docs/numbering.md)
_STAGE_ENDS = {"resnet18": (2, 4, 6, 8), "resnet34": (3, 7, 13, 16), "wrn16_10": (2, 4, 6),
               "resnext29_32x4d": (3, 6, 9)}
_BLOCKS = {"resnet18": 8}
_LGAM_STAGE = ("Table 2 (one attention module after conv2_x ... conv5_x, i.e. after the last block of each "
               "stage); the text says 'in every residual block' of ResNet-18: Table 2's reading reproduces LGAM's "
               "+0.03M, the text's would add 0.05M")
_LGAM_BLOCK = ("the text's 'embedded in every residual block' (end of each block's residual branch); Table 2's "
               "one-per-stage reading adds half as much, below the printed figure")
_LGAM_T1_OTHER = ("section 3.1.1 does not state where LGAM goes in this network; read as Table 2's ResNet-18 layout, "
                  "one module after the last block of each stage")
_SE_ROUND = "; timm's SE rounds the hidden width to a multiple of 8 (64 channels get 8, not 4)"


def _lgam_arch(backbone: str, module: str | None, classes: int, *, per_block: bool = False,
               imagenet: bool = False) -> Arch:
    if module is None:
        placements = []
    elif per_block:
        placements = [Placement(k, module, "inside") for k in range(1, _BLOCKS[backbone] + 1)]
    else:
        placements = [Placement(k, module, "insert") for k in _STAGE_ENDS[backbone]]
    if imagenet:
        return Arch(backbone, num_classes=classes, placements=placements)
    return Arch(backbone, num_classes=classes, input_size=32, small_input=backbone.startswith("resnet1")
                or backbone == "resnet34", placements=placements)


def _lgam_t1() -> tuple[Figure, ...]:
    rows = (("ResNet 18", "resnet18", None, "11.22M", "23.52"), ("ResNet 18+LGAM", "resnet18", "lgam", "11.25M",
                                                                   "22.94"),
            ("ResNet 34", "resnet34", None, "21.33M", "22.45"), ("ResNet 34+LGAM", "resnet34", "lgam", "21.39M",
                                                                   "21.36"),
            ("WRN 16-10", "wrn16_10", None, "17.43M", "22.54"), ("WRN 16-10+LGAM", "wrn16_10", "lgam", "17.48M",
                                                                   "21.55"),
            ("ResNeXt 29", "resnext29_32x4d", None, "24.26M", "22.59"),
            ("ResNeXt 29+LGAM", "resnext29_32x4d", "lgam", "24.34M", "21.47"))
    out = []
    for k, (row, bb, m, p, err) in enumerate(rows, 1):
        reason = ""
        if bb == "resnext29_32x4d":
            reason = ("section 3.1.1 names the network ResNeXt29(32*4d), 4.87M at 100 classes (ours); the "
                      "printed 24.26M fits neither it nor ResNeXt-29 8x64d (34.5M at 100 classes): the row is "
                      "counted as the network the text names")
        elif bb == "wrn16_10":
            reason = ("WRN-16-10 at 100 classes has 17.17M (ours: Zagoruyko & Komodakis' layout, 17.12M at 10 "
                      "classes); the printed 17.43M is 0.26M more, which the paper does not explain")
        out.append(Figure("LGAM", "Table 1", row, LGAM_SRC, Quantity(p), None, _lgam_arch(bb, m, 100),
                          id=f"LGAM-T1-r{k}", dataset="CIFAR-100", top1=f"err {err}",
                          placement=(_LGAM_STAGE if bb == "resnet18" else _LGAM_T1_OTHER) if m else "",
                          reason=reason))
    return tuple(out)


_T34_MODULES = (("ResNet 18", None), ("ResNet 18-SE", "se"), ("ResNet 18-SGE", "sge"), ("ResNet 18-CBAM", "cbam"),
                ("ResNet 18-BAM", "bam"), ("ResNet 18-LGAM", "lgam"))


def _lgam_placement(module: str | None) -> tuple[bool, str]:
    """(per block, note): SE, SGE and CBAM read as every block, BAM and LGAM as one per stage."""
    if module in ("se", "sge", "cbam"):
        return True, _LGAM_BLOCK + (_SE_ROUND if module == "se" else "")
    if module in ("bam", "lgam"):
        return False, _LGAM_STAGE if module == "lgam" else (
            "Table 2 (one module after each stage; BAM's own paper places it between stages)")
    return False, ""


def _lgam_t3() -> tuple[Figure, ...]:
    c10 = ("11.17M 5.68", "11.26M 5.54", "11.17M 5.33", "11.26M 5.41", "11.24M 5.25", "11.20M 5.16")
    c100 = ("11.22M 23.52", "11.31M 23.32", "11.22M 23.35", "11.31M 23.23", "11.29M 23.21", "11.25M 22.94")
    out = []
    for k, ((row, m), a, b) in enumerate(zip(_T34_MODULES, c10, c100, strict=True), 1):
        per_block, note = _lgam_placement(m)
        for cols, classes, tag in ((a, 10, "c10"), (b, 100, "c100")):
            p, err = cols.split()
            reason = ""
            out.append(Figure("LGAM", "Table 3", f"{row} (Cifar{classes} columns)", LGAM_SRC, Quantity(p), None,
                              _lgam_arch("resnet18", m, classes, per_block=per_block), id=f"LGAM-T3-r{k}-{tag}",
                              dataset=f"CIFAR-{classes}", top1=f"err {err}", placement=note, reason=reason))
    return tuple(out)


def _lgam_t4() -> tuple[Figure, ...]:
    rows = (("11.19M", "25.57"), ("11.27M", "25.26"), ("11.19M", "24.38"), ("11.27M", "23.74"), ("11.25M", "23.57"),
            ("11.22M", "23.14"))
    out = []
    for k, ((row, m), (p, err)) in enumerate(zip(_T34_MODULES, rows, strict=True), 1):
        per_block, note = _lgam_placement(m)
        out.append(Figure("LGAM", "Table 4", row, LGAM_SRC, Quantity(p), None,
                          _lgam_arch("resnet18", m, 20, per_block=per_block, imagenet=True), id=f"LGAM-T4-r{k}",
                          dataset="ImageNet2012, 20 randomly drawn classes (section 3.2)", top1=f"err {err}",
                          placement=(note + "; 224 px, 20 classes: ResNet-18's 11.69M less 980 classifier rows "
                                     "gives the printed 11.19M").lstrip("; ")))
    return tuple(out)


LGAM_FIGURES = _lgam_t1() + _lgam_t3() + _lgam_t4()


# -- LADNet ----------------------------------------------------------------------------------------------
_LAD_NETS = {"DRN": ("drn_a_50", 16), "ResNet-50": ("resnet50", 16), "Resnext": ("resnext50_32x4d", 16)}
_LAD_READING = ("'embedded in' read as CBAM/SE at the end of every bottleneck's residual branch (their papers' "
                "placement) and LA beside every block (LADNet III.C)")
_LAD_DRN = ("the paper names no DRN depth; read as DRN-A-50, the DRN of ResNet-50's size. The printed GFLOPs fit "
            "an undilated ResNet-50 (3.86G vanilla, ours for v1): DRN-A-50 keeps 28 x 28 maps in its dilated stages "
            "and costs ~19G at 224 px")
_LAD_BELOW = "the printed params are below the vanilla network's (25.56M): no module added to it can give that"


def _lad_arch(net: str, module: str | None, *, classes: int = 1000, cifar: bool = False) -> Arch:
    backbone, blocks = _LAD_NETS[net]
    op = "parallel" if module == "la" else "inside"
    placements = [Placement(k, module, op) for k in range(1, blocks + 1)] if module else []
    variant = "v1" if backbone == "resnet50" else None
    if cifar:
        return Arch(backbone, num_classes=classes, input_size=32, small_input=True, placements=placements,
                    variant=variant)
    return Arch(backbone, placements=placements, variant=variant)


def _lad(table: int, k: int, row: str, params: str | None, flops: str | None, target: Arch | None, *,
         dataset: str = "ImageNet", top1: str = "", top5: str = "", placement: str = "", reason: str = "") -> Figure:
    return Figure("LADNet", f"Table {table}", row, LADNET_SRC, _q(params), _q(flops), target, placement, reason,
                  id=f"LADNet-T{table}-r{k}", dataset=dataset, top1=top1, top5=top5)


_UNNAMED = "not expressible: the paper names no network for this row (only the module or family)"


def _ladnet_t1_t6() -> tuple[Figure, ...]:
    t1 = (("CBAM", "97.5 92.58 50"), ("BAM [15]", "98 93 50"), ("SENet", "97 91.5 50"), ("ResNet-50", "97 91 55"),
          ("LGAM [16]", "95.3 91 55"), ("WRN [17]", "96.7 90.3 50"), ("LADNet", "98.7 96.5 40"))
    t6 = (("CBAM", "82 96.7.0 80"), ("BAM [15]", "82.5 96.0 80"), ("SENet", "82 96.2 80"),
          ("ResNet-50", "76 93.0 90"), ("LGAM [16]", "78 94.0 90"), ("WRN [17]", "79 94.0 80"),
          ("LADNet", "83.9 97.2 60"))
    out = []
    for k, (row, v) in enumerate(t1, 1):
        a, b, ep = v.split()
        arch = _lad_arch("ResNet-50", None, classes=100, cifar=True) if row == "ResNet-50" else None
        out.append(_lad(1, k, f"{row} ({ep} epochs)", None, None, arch, dataset="CIFAR-10, CIFAR-100",
                        top1=f"CIFAR-10 {a}; CIFAR-100 {b}", reason="" if arch else _UNNAMED,
                        placement="counted at CIFAR-100 size (32 px, 3x3 stem, 100 classes)" if arch else ""))
    for k, (row, v) in enumerate(t6, 1):
        a, b, ep = v.split()
        arch = _lad_arch("ResNet-50", None) if row == "ResNet-50" else None
        out.append(_lad(6, k, f"{row} ({ep} epochs)", None, None, arch, top1=a, top5=b,
                        reason="" if arch else _UNNAMED + "; Table 7 prints its figures"))
    nets = {2: "DRN", 3: "ResNet-50", 4: "Resnext"}
    accs = {2: ("98.3 94.9 40", "98.35 94.3 50", "98.7 96.5 40"), 3: ("98.3 93 40", "98.2 93 55", "98.52 93.2 40"),
            4: ("98.13 95.1 50", "98.10 94.7 55", "98.65 95.4 45"), 5: ("98.67 95.69 50", "98.39 94.8 60",
                                                                        "98.74 96.23 50")}
    for t, cols in accs.items():
        for k, (m, v) in enumerate(zip(("cbam", "se", "la"), cols, strict=True), 1):
            a, b, ep = v.split()
            arch = _lad_arch(nets[t], m, classes=100, cifar=True) if t in nets else None
            reading = (_LAD_READING + "; counted at CIFAR-100 size (32 px, 3x3 stem, 100 classes)"
                       + ("; " + _LAD_DRN.split(". ")[0] if t == 2 else ""))
            out.append(_lad(t, k, f"Module + {m.upper()} ({ep} epochs)", None, None, arch,
                            dataset="CIFAR-10, CIFAR-100", top1=f"CIFAR-10 {a}; CIFAR-100 {b}",
                            placement=reading if arch else "",
                            reason="" if arch else "not expressible: the paper names no DenseNet depth"))
    return tuple(out)


def _ladnet_t7_t11() -> tuple[Figure, ...]:
    out = [
        _lad(7, 1, "CBAM", "28.1M", "3.86G", _lad_arch("ResNet-50", "cbam"), placement=(
            "read as ResNet-50 + CBAM, the network of Table 9's CBAM column; " + _LAD_READING)),
        _lad(7, 2, "BAM", "23.68M", "3.37G", None, reason="not expressible: the paper names no backbone for BAM; "
             + _LAD_BELOW.replace("the vanilla network's", "ResNet-50's")),
        _lad(7, 3, "SENET", "25.8M", "3.87G", _lad_arch("ResNet-50", "se"), placement=(
            "read as ResNet-50 + SE, the network of Table 9's SE column; " + _LAD_READING + _SE_ROUND),
             reason="SE in every bottleneck adds 2.5M to ResNet-50 (Hu et al. print 28.1M for SE-ResNet-50); the "
                    "printed 25.8M is 0.24M above ResNet-50"),
        _lad(7, 4, "RESNET-50", "25.56M", "3.86G", _lad_arch("ResNet-50", None),
             placement="ResNet-50 v1 (stride in the first 1x1 of a downsampling bottleneck), whose 3.86G is printed"),
        _lad(7, 5, "LGAM", "23.46M", "3.98G", None, reason="not expressible: the paper names no backbone for LGAM"),
        _lad(7, 6, "WRN", "23.52M", "3.88G", None, reason="not expressible: the paper names no WRN depth or width"),
        _lad(7, 7, "LADNET", "20.4M", "4.21G", _lad_arch("DRN", "la"), placement=(
            "LADNet = DRN + LA, Table 8's LA column (the same figures); " + _LAD_DRN),
             reason=_LAD_BELOW),
    ]
    figs = {8: ("DRN", ("28.2M 3.87G", "25.9M 3.88G", "20.4M 4.21G")),
            9: ("ResNet-50", ("28.2M 3.86G", "26.1M 3.86G", "21.5M 3.96G")),
            10: ("Resnext", ("28.3M 4.2G", "26.7M 4.11G", "21.1M 4.1G")),
            11: ("Densenet", ("29.3M 4.12G", "28.2M 3.96G", "22.3M 4G"))}
    for t, (net, cols) in figs.items():
        for k, (m, v) in enumerate(zip(("cbam", "se", "la"), cols, strict=True), 1):
            p, f = v.split()
            arch = _lad_arch(net, m) if net in _LAD_NETS else None
            notes = [_LAD_READING + (_SE_ROUND if m == "se" else "")]
            if net == "DRN":
                notes.append(_LAD_DRN)
            if net == "Resnext":
                notes.append("the paper names no ResNeXt depth; read as ResNeXt-50 (32x4d), the ImageNet ResNeXt")
            reasons = []
            if m == "la":
                reasons.append(_LAD_BELOW.replace("25.56M", "ResNeXt-50: 25.03M" if net == "Resnext" else "25.56M"))
            elif m == "se":
                reasons.append("SE in every bottleneck adds about 2.5M (Hu et al.: 28.1M for SE-ResNet-50); the "
                               "printed figure is lower, and no placement stated gives it")
            elif net == "Resnext":
                reasons.append("CBAM in every bottleneck of ResNeXt-50 gives 27.55M; the printed 28.3M is 0.75M more, "
                               "and no placement stated gives it")
            if net == "DRN":
                reasons.append("the printed GFLOPs fit an undilated network (ResNet-50 + module); ours are "
                               "DRN-A-50's, dilated")
            elif m == "la" or net == "Resnext":
                reasons.append("the printed GFLOPs are within 3.5 % of ours")
            reason = "; ".join(reasons)
            if arch is None:
                reason = "not expressible: the paper names no DenseNet depth (DenseNet-121 has 7.98M, -201 20.0M)"
            out.append(_lad(t, k, f"Module + {m.upper()}", p, f, arch, placement="; ".join(notes) if arch else "",
                            reason=reason))
    return tuple(out)


LADNET_FIGURES = _ladnet_t1_t6() + _ladnet_t7_t11()


# -- CSM -------------------------------------------------------------------------------------------------
_CSM_READING = ("the paper does not say where the module goes; read as the end of every block's residual "
                "branch, where SE and CBAM place theirs")
_CSM_NETS = {"ResNet-18": ("resnet18", 8, 1.0), "ResNet-34": ("resnet34", 16, 1.0), "ResNet-50": ("resnet50", 16, 1.0),
             "WideResNet18(widen=1.5)": ("resnet18", 8, 1.5)}


def _csm_arch(net: str, module: str | None, *, cifar: bool = False) -> Arch:
    backbone, blocks, width = _CSM_NETS[net]
    placements = [Placement(k, module, "inside") for k in range(1, blocks + 1)] if module else []
    if cifar:
        return Arch(backbone, width=width, num_classes=100, input_size=32, small_input=True, placements=placements)
    return Arch(backbone, width=width, placements=placements)


_CSM_LIMIT = ("not expressible at 224 px: the spatial part's (hw)^2 attention at ResNet's first stage (56 x 56 = "
              "3,136 positions) is over the module's 1,024-position limit, and the paper states no other placement")


def _csm_target(net: str, module: str | None) -> Arch | None:
    """ImageNet rows: ``sam``/``csm`` in every block cannot be built (:data:`_CSM_LIMIT`)."""
    return None if module in ("sam", "csm") else _csm_arch(net, module)


def _csm() -> tuple[Figure, ...]:
    out = []
    for k, (m, err) in enumerate(((None, "24.55"), ("sam", "23.47"), ("cam", "23.21"), ("csm", "22.78")), 1):
        row = "ResNet-50" + (f"+{m.upper()}" if m else "")
        out.append(Figure("CSM", "Table I", row, CSM_SRC, None, None, _csm_target("ResNet-50", m), id=f"CSM-T1-r{k}",
                          dataset="ImageNet-1K (not stated; its ResNet-50 and +CSM rows are Table II's)",
                          top1=f"err {err}", placement=_CSM_READING if m == "cam" else "",
                          reason=_CSM_LIMIT if m in ("sam", "csm") else ""))
    t2 = ("29.62 10.56", "29.43 10.24", "29.29 10.12", "26.71 8.62", "26.16 8.37", "26.03 8.28", "24.55 7.52",
          "23.21 6.74", "22.78 6.57", "26.86 8.91", "26.23 8.51", "26.14 8.49")
    rows = [(net, m) for net in _CSM_NETS for m in (None, "se", "csm")]
    for k, ((net, m), v) in enumerate(zip(rows, t2, strict=True), 1):
        a, b = v.split()
        out.append(Figure("CSM", "Table II", net + (f"+{m.upper()}" if m else ""), CSM_SRC, None, None,
                          _csm_target(net, m), id=f"CSM-T2-r{k}", dataset="ImageNet-1K", top1=f"err {a}",
                          top5=f"err {b}", placement=_CSM_READING + _SE_ROUND if m == "se" else "",
                          reason=_CSM_LIMIT if m == "csm" else ""))
    t3 = ("91.7", "93.1", "92.4", "93.8", "92.9", "94.3", "92.8", "94.2")
    rows = [(net, m) for net in _CSM_NETS for m in (None, "csm")]
    for k, ((net, m), acc) in enumerate(zip(rows, t3, strict=True), 1):
        out.append(Figure("CSM", "Table III", net + ("+CSM" if m else ""), CSM_SRC, None, None,
                          _csm_arch(net, m, cifar=True), id=f"CSM-T3-r{k}", dataset="CIFAR-100", top1=acc,
                          placement=(_CSM_READING if m else "") + ("; " if m else "")
                          + "CIFAR layout not stated; read as the 3x3 stride-1 stem without max-pool"))
    return tuple(out)


CSM_FIGURES = _csm()


def _slug(text: str) -> str:
    """A shell-safe id part: letters, digits and dashes."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _backbone(row: str, source: str, params: str, target: Arch, reason: str = "") -> Figure:
    return Figure("backbone", "parameter counts", row, source, Quantity(params), None, target, reason=reason,
                  id=f"backbone-{_slug(row)}")


BACKBONE_FIGURES = (
    _backbone("ResNet-18", DRN_README, "11.7M", Arch("resnet18")),
    _backbone("ResNet-34", DRN_README, "21.8M", Arch("resnet34")),
    _backbone("ResNet-50", DRN_README, "25.6M", Arch("resnet50")),
    _backbone("DRN-A-50", DRN_README, "25.6M", Arch("drn_a_50")),
    _backbone("DRN-C-26", DRN_README, "21.1M", Arch("drn_c_26")),
    _backbone("DRN-D-22", DRN_README, "16.4M", Arch("drn_d_22")),
    _backbone("ResNeXt-29, 8x64d (CIFAR-10)", f"Xie et al. 2017, Table 7, {SPEC_QUOTE}", "34.4M",
              Arch("resnext29_8x64d", num_classes=10, input_size=32)),
    _backbone("WRN-28-10 (CIFAR-10)", f"Zagoruyko & Komodakis 2016, {SPEC_QUOTE}", "36.5M",
              Arch("wrn28_10", num_classes=10, input_size=32)),
    _backbone("DenseNet-BC, L = 100, k = 12 (CIFAR)", f"Huang et al. 2017, Table 2, {SPEC_QUOTE}", "0.8M",
              Arch("densenet_bc100", num_classes=10, input_size=32)),
)


FIGURES: tuple[Figure, ...] = ULSAM_FIGURES + LGAM_FIGURES + LADNET_FIGURES + CSM_FIGURES + BACKBONE_FIGURES
BY_ID: dict[str, Figure] = {f.id: f for f in FIGURES}

#: the papers' tables that print no params, FLOPs or accuracy (layouts and datasets), for the docs
NO_FIGURES = (
    ("ULSAM", "Table 2 (datasets), Tables 3-5 (MV1 and MV2 layouts, MV1 layers 8-12 with ULSAM)"),
    ("LGAM", "Table 2 (ResNet-18 with an attention module after each stage)"),
)
