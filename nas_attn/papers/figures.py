"""Every parameter / FLOP figure of the source papers found from here, with its source and what expresses it.

Where the figures come from (the search that found them is in ``docs/paper-tables.md``):

- ULSAM: the paper's own text was not reachable; the authors' WACV 2020 slides and poster in their repository
  (github.com/Nandan91/ULSAM, ``ULSAM_Slides_WACV2020.pdf``, ``ULSAM_Poster_WACV2020.pdf``) reproduce its
  module-overhead, ImageNet-1K, fine-grained and ablation tables. They give the figures but not the layers
  ULSAM was placed at: such rows carry the placement that reproduces the figures, marked *inferred*, with the
  layers that give the same figures.
- LGAM and LADNet: no table was reachable (``UNAVAILABLE``). Their networks are still listed, with our figures
  only (no paper figure), so that a user who has the paper can read theirs beside ours: LGAM's Table 1 networks
  as the project's issue names them, and LADNet's DRNs with Light-Attention beside every block.
- The backbones the papers build on: the DRN authors' README (github.com/fyu/drn) and the papers the project's
  domain specification quotes (Xie et al. 2017, Zagoruyko & Komodakis 2016, Huang et al. 2017).

Nothing here is computed: a figure is what its source prints.
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
        paper: ULSAM, LGAM, LADNet, CSM, or ``backbone`` for the networks the papers build on.
        table: the table as its source names it.
        row: the row's label in the source.
        source: where the figure is printed.
        params, flops: the printed figures (``None`` where the row gives none).
        target: the arch or module that expresses the row; ``None`` if nothing here can.
        placement: how the placement was chosen where the source does not state it.
        reason: why our figure differs by more than 1 %, where it does.
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


@dataclass(frozen=True)
class Unavailable:
    """A table whose figures could not be found here, and where they were looked for."""

    paper: str
    tables: str
    looked: tuple[str, ...] = field(default_factory=tuple)


# -- sources -----------------------------------------------------------------------------------------
_ULSAM_REPO = "github.com/Nandan91/ULSAM (commit 9a07d68)"
SLIDES = f"{_ULSAM_REPO}, ULSAM_Slides_WACV2020.pdf"
POSTER = f"{_ULSAM_REPO}, ULSAM_Poster_WACV2020.pdf"
DRN_README = "github.com/fyu/drn README.md (commit d75db2e), table 'Models'"
SPEC_QUOTE = "as quoted in the project's domain specification"

# -- reasons shared by several rows -------------------------------------------------------------------
_MV2_BASE = ("the paper starts from MobileNetV2 rounded to 3.4M / 300M; torchvision's, ours, has 3,504,872 "
             "params and 300.77M multiply-adds")
_MV1_BASE = "the paper subtracts ULSAM's saving from MobileNetV1 rounded to 4.2M (ours 4,231,976)"
_SAME = "the slides name no layer; {} give the same figures"


def _mv(backbone: str, *placements: tuple[int, str], width: float = 1.0) -> Arch:
    """MobileNet at 224 px, 1000 classes, with ULSAM (g = 4) at the given (layer, op) pairs."""
    return Arch(backbone, width=width, placements=[Placement(k, "ulsam", op, 4) for k, op in placements])


def _ulsam(table: str, source: str, row: str, params: str, flops: str, target: Arch | ModuleCase | None,
           placement: str = "", reason: str = "") -> Figure:
    return Figure("ULSAM", table, row, source, Quantity(params), Quantity(flops), target, placement, reason)


_OVERHEAD = "module overheads (m = 512, r = 16, h x w = 14 x 14, BAM dilation 4)"
_IMAGENET = "ImageNet-1K results"
_FINE = "fine-grained results (figures at 1000 classes, as the vanilla rows)"
_ABLATION = "ablation on ImageNet-1K"

ULSAM_FIGURES = (
    _ulsam(_OVERHEAD, f"{SLIDES} p. 4; {POSTER}", "Non-local", "524K", "102.76M", ModuleCase("nonlocal", 512, 14),
           reason="the paper's 2m^2 hw leaves out the two (hw)^2 matrix products, which we count; biases and BN "
                  "add 0.4 % to the params"),
    _ulsam(_OVERHEAD, f"{SLIDES} p. 4; {POSTER}", "A2-Net", "66K", "12.85M", None,
           reason="A2-Net (Chen et al. 2018) is not a registered module"),
    _ulsam(_OVERHEAD, f"{SLIDES} p. 4; {POSTER}", "SE-Net", "33K", "0.03M", ModuleCase("se", 512, 14)),
    _ulsam(_OVERHEAD, f"{SLIDES} p. 4; {POSTER}", "BAM", "84K", "16.49M", ModuleCase("bam", 512, 14),
           reason="the paper's formula charges 4m^2/r, per position in the FLOPs; BAM has 3m^2/r (two MLP "
                  "layers and a 1x1 reduction), and only the 1x1 (m^2/r) runs per position"),
    _ulsam(_OVERHEAD, f"{SLIDES} p. 4; {POSTER}", "CBAM", "33K", "0.05M", ModuleCase("cbam", 512, 14),
           reason="the paper counts CBAM's shared MLP once; it runs on the average- and the max-pooled vector"),
    _ulsam(_OVERHEAD, f"{SLIDES} p. 6; {POSTER}", "ULSAM", "1K", "0.2M", ModuleCase("ulsam", 512, 14, 4)),
    _ulsam(_IMAGENET, f"{SLIDES} p. 9; {POSTER}", "1.0 MV1 (vanilla)", "4.2M", "569M", _mv("mobilenetv1")),
    _ulsam(_IMAGENET, f"{SLIDES} p. 9; {POSTER}", "1.0 MV1 + ULSAM (two rows)", "4.2M", "569.2M",
           _mv("mobilenetv1", (12, "insert")),
           placement="inferred: inserted after a 512-channel 14x14 layer; " + _SAME.format("layers 7-12")),
    _ulsam(_IMAGENET, f"{SLIDES} p. 9; {POSTER}", "1.0 MV1 + ULSAM", "4.2M", "569.1M",
           _mv("mobilenetv1", (14, "insert")),
           placement="inferred: inserted after a 1024-channel 7x7 layer; " + _SAME.format("layers 13, 14")),
    _ulsam(_IMAGENET, f"{SLIDES} p. 9; {POSTER}", "MV2 (vanilla)", "3.4M", "300M", _mv("mobilenetv2"),
           reason=_MV2_BASE),
    _ulsam(_IMAGENET, f"{SLIDES} p. 9; {POSTER}", "MV2 + ULSAM", "3.4M", "300.01M", _mv("mobilenetv2", (17, "insert")),
           placement="inferred: the smallest ULSAM insertion (+15,680 multiply-adds, 300.02M from a 300M base); "
                     + _SAME.format("16:1 and 17:1"),
           reason=_MV2_BASE),
    _ulsam(_FINE, f"{SLIDES} p. 10; {POSTER}", "MV1 + ULSAM (g = 1, 4, 8, 16)", "3.9M", "517M",
           _mv("mobilenetv1", (12, "substitute")),
           placement="inferred: one 512-channel layer substituted; " + _SAME.format("layers 8-12"),
           reason=_MV1_BASE + " (ours 3.96M)"),
    _ulsam(_FINE, f"{SLIDES} p. 10; {POSTER}", "MV2 + ULSAM", "3.28M", "277.34M",
           _mv("mobilenetv2", (14, "substitute")),
           placement="inferred: one 96-channel layer substituted; " + _SAME.format("layers 13, 14"),
           reason=_MV2_BASE),
    _ulsam(_FINE, f"{SLIDES} p. 10; {POSTER}", "MV2 + ULSAM", "3.08M", "284.54M",
           _mv("mobilenetv2", (17, "substitute")),
           placement="inferred: one 160-channel layer substituted; " + _SAME.format("layers 16, 17"),
           reason=_MV2_BASE),
    _ulsam(_FINE, POSTER, "MV2 + ULSAM", "3.23M", "267.06M",
           _mv("mobilenetv2", (11, "substitute"), (14, "substitute")),
           placement="inferred: one 64- and one 96-channel layer substituted; "
                     + _SAME.format("any of 9-11 with any of 13, 14"),
           reason=_MV2_BASE),
    _ulsam(_FINE, POSTER, "MV2 + ULSAM", "2.77M", "269.08M", _mv("mobilenetv2", (16, "substitute"), (17, "substitute")),
           placement="inferred: both 160-channel layers 16, 17 substituted", reason=_MV2_BASE),
    _ulsam(_FINE, f"{SLIDES} p. 10; {POSTER}", "MV2 + ULSAM", "2.97M", "261.88M",
           _mv("mobilenetv2", (14, "substitute"), (17, "substitute")),
           placement="inferred: one 96- and one 160-channel layer substituted (14 and 17, as the ablation row); "
                     + _SAME.format("13 or 14 with 16 or 17"),
           reason=_MV2_BASE),
    _ulsam(_FINE, f"{SLIDES} p. 10; {POSTER}", "MV2 + ULSAM", "2.54M", "224.16M",
           _mv("mobilenetv2", *((k, "substitute") for k in (13, 14, 16, 17))),
           placement="inferred: layers 13, 14, 16, 17 substituted, the only placement near 224M (the ablation "
                     "prints 223.77M for the same params)",
           reason=_MV2_BASE),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "1.0 MV1 + ULSAM (g = 1 ... 16)", "3.9M", "517M",
           _mv("mobilenetv1", (12, "substitute")),
           placement="inferred: one 512-channel layer substituted; " + _SAME.format("layers 8-12"),
           reason=_MV1_BASE + " (ours 3.96M)"),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "0.75 MV1 (vanilla)", "2.6M", "325M",
           _mv("mobilenetv1", width=0.75)),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "0.75 MV1 + ULSAM (g = 1, 4)", "2.4M", "296M",
           _mv("mobilenetv1", (12, "substitute"), width=0.75),
           placement="inferred: one 384-channel layer substituted; " + _SAME.format("layers 8-12")),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "0.50 MV1 (vanilla)", "1.3M", "149M",
           _mv("mobilenetv1", width=0.5)),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "0.50 MV1 + ULSAM (g = 1, 4)", "1.2M", "136M",
           _mv("mobilenetv1", (12, "substitute"), width=0.5),
           placement="inferred: one 256-channel layer substituted; " + _SAME.format("layers 8-12"),
           reason="the paper subtracts the 68K saving from MobileNetV1 x0.5 rounded to 1.3M (ours 1.33M, 1.26M "
                  "after the substitution)"),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "MV2 + ULSAM (g = 4)", "2.96M", "261.88M",
           _mv("mobilenetv2", (14, "substitute"), (17, "substitute")),
           placement="layers 14 and 17 substituted (the project's specification; 13 or 14 with 16 or 17 give "
                     "the same figures)",
           reason=_MV2_BASE),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "MV2 + ULSAM (g = 4)", "2.77M", "269.07M",
           _mv("mobilenetv2", (16, "substitute"), (17, "substitute")),
           placement="inferred: both 160-channel layers 16, 17 substituted", reason=_MV2_BASE),
    _ulsam(_ABLATION, f"{SLIDES} p. 11; {POSTER}", "MV2 + ULSAM (g = 4)", "2.54M", "223.77M",
           _mv("mobilenetv2", *((k, "substitute") for k in (13, 14, 16, 17))),
           placement="inferred: layers 13, 14, 16, 17 substituted", reason=_MV2_BASE),
)


def _backbone(row: str, source: str, params: str, target: Arch, reason: str = "") -> Figure:
    return Figure("backbone", "parameter counts", row, source, Quantity(params), None, target, reason=reason)


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

_LGAM_TABLE1 = ("Table 1 networks on CIFAR-100 (WRN-16-10, ResNeXt-29 8x64d; the paper's figures were not "
                "available here)")
_LGAM_SOURCE = "the networks and baselines the project's issue 8 names for LGAM Table 1; no figure printed here"
_LGAM_LAYOUT = ("LGAM's layout, one module after the last block of each stage (LGAM section 2: after conv2_x ... "
                "conv5_x); where the paper puts SE, SGE, CBAM and BAM is not known here")
_SGE_GROUPS = "; SGE with 32 groups (Li et al.'s 64 does not divide WRN-16-10's 160 channels)"


def _lgam_row(backbone: str, label: str, stage_ends: tuple[int, ...], module: str | None,
              groups: int | None = None) -> Figure:
    placements = [Placement(k, module, "insert", groups=groups) for k in stage_ends] if module else []
    arch = Arch(backbone, num_classes=100, input_size=32, small_input=True, placements=placements)
    name = f"{label} + {module.upper()}" if module else f"{label} (vanilla)"
    note = (_LGAM_LAYOUT + (_SGE_GROUPS if module == "sge" and groups != 64 else "")) if module else ""
    return Figure("LGAM", _LGAM_TABLE1, name, _LGAM_SOURCE, None, None, arch, placement=note)


LGAM_FIGURES = tuple(
    _lgam_row(backbone, label, ends, module, groups if module != "sge" else sge_groups)
    for backbone, label, ends, sge_groups in (("wrn16_10", "WRN-16-10", (2, 4, 6), 32),
                                              ("resnext29_8x64d", "ResNeXt-29", (3, 6, 9), 64))
    for module, groups in ((None, None), ("se", None), ("sge", None), ("cbam", None), ("bam", None), ("lgam", 4))
)


def _ladnet_row(backbone: str, label: str, blocks: range, with_la: bool) -> Figure:
    placements = [Placement(k, "la", "parallel") for k in blocks] if with_la else []
    return Figure(
        "LADNet", "Tables 7-11 networks (the paper's figures were not available here)",
        f"{label} + LA beside every block" if with_la else f"{label} (vanilla)",
        "LADNet III.C (the LA module in parallel with each block's main line and shortcut); no figure printed here",
        None, None, Arch(backbone, placements=placements),
        reason=("LADNet's figures put LA networks below the vanilla parameter count (the project's domain "
                "specification): no module added beside a block can do that; ours are above it") if with_la else "")


#: the residual blocks of each DRN (DRN-D-22's layers 1, 2 are plain convolutions: docs/numbering.md)
LADNET_FIGURES = tuple(_ladnet_row(b, label, blocks, la)
                       for b, label, blocks in (("drn_c_26", "DRN-C-26", range(1, 11)),
                                                ("drn_d_22", "DRN-D-22", range(3, 11)))
                       for la in (False, True))

FIGURES: tuple[Figure, ...] = ULSAM_FIGURES + LGAM_FIGURES + LADNET_FIGURES + BACKBONE_FIGURES

_SEARCHED = (
    "search corpora 'pages', 'docs' and 'code' (paper titles, author names, module names, table contents)",
)
UNAVAILABLE = (
    Unavailable("ULSAM", "Tables 1, 3, 6-12 as numbered in the paper", (
        "arXiv 2006.15102 pages (arxiv-vanity, paperswithcode, emergentmind): abstract only",
        "github.com/Nandan91/ULSAM: the slides and poster used above give four of the paper's tables without "
        "their numbers or the layers ULSAM was placed at; the README only links the paper",
        *_SEARCHED)),
    Unavailable("LGAM", "Tables 1, 3, 4", (
        "joca.cn abstract page of DOI 10.11772/j.issn.1001-9081.2019081425: abstract only",
        "the Chinese title and the module, network and dataset names", *_SEARCHED)),
    Unavailable("LADNet", "Tables 7-11", (
        "IEEE Access 9 (2021): no page with the paper's text found",
        "'LADNet', 'Light-Attention', 'global stochastic pooling', 'dilated residual network'", *_SEARCHED)),
)
