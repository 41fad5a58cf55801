import pytest
import torch

from nas_attn.complexity import count_flops, count_params
from nas_attn.errors import ModuleConfigError
from nas_attn.modules import create, get_entry, list_modules
from nas_attn.modules.lgam import LGAM
from nas_attn.modules.light_attention import global_stochastic_pool
from nas_attn.modules.ulsam import ULSAM, ulsam_loop_reference

ALL = list_modules()


def _make(name, channels=32):
    return create(name, channels, 4 if get_entry(name).takes_groups else None)


def test_registry_lists_every_module_of_the_papers():
    assert set(ALL) >= {"ulsam", "ulsam_official", "la", "lgam", "csm", "cam", "sam", "csm_spatial_first", "sge",
                        "nonlocal", "bam", "se", "cbam", "eca", "gc"}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("training", [True, False])
def test_shape_finite_and_gradient(name, training):
    m = _make(name).train(training)
    x = torch.randn(3, 32, 8, 8, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_registry_errors():
    with pytest.raises(ModuleConfigError, match="unknown attention module 'nope'"):
        create("nope", 32)
    with pytest.raises(ModuleConfigError, match="groups=5 do not divide 32 channels"):
        create("ulsam", 32, 5)
    with pytest.raises(ModuleConfigError, match="takes no groups"):
        create("se", 32, 4)
    with pytest.raises(ModuleConfigError, match="channels must be a positive integer"):
        create("se", 0)


@pytest.mark.parametrize("g", [1, 2, 4, 8, 16])
def test_ulsam_params_and_flops_do_not_depend_on_groups(g):
    m, h, w = 96, 14, 14
    mod = create("ulsam", m, g)
    assert count_params(mod) == 2 * m
    assert count_flops(mod, (1, m, h, w)) == 2 * m * h * w


@pytest.mark.parametrize("g", [1, 2, 4, 8, 16])
def test_ulsam_one_map_per_group_summing_to_one(g):
    m, h, w = 32, 6, 5
    mod = create("ulsam", m, g)
    x = torch.rand(2, m, h, w, dtype=torch.float64) + 0.5  # away from 0 so (out - in) / in is well defined
    y = mod.double()(x)
    ratio = ((y - x) / x).view(2, g, m // g, h, w)
    torch.testing.assert_close(ratio, ratio[:, :, :1].expand_as(ratio))  # one map shared by the group
    torch.testing.assert_close(ratio[:, :, 0].sum((-1, -2)), torch.ones(2, g, dtype=torch.float64))


def test_ulsam_vectorised_equals_loop_over_groups():
    mod = ULSAM(64, 8)
    torch.nn.init.normal_(mod.dw.weight)
    torch.nn.init.normal_(mod.pw.weight)
    x = torch.randn(2, 64, 7, 7)
    torch.testing.assert_close(mod(x), ulsam_loop_reference(mod, x))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "make",
    [torch.zeros, lambda *s: -torch.rand(*s) - 1, lambda *s: torch.full(s, 3.0), lambda *s: torch.randn(*s) * 1e4,
     lambda *s: torch.randn(*s).relu() * 1e4, lambda *s: torch.full(s, -1e4)],
    ids=["zeros", "negative", "constant", "1e4", "1e4-sparse", "-1e4-constant"],
)
def test_la_finite_on_hard_inputs(make, training):
    mod = create("la", 32).train(training)
    x = make(2, 32, 6, 6).requires_grad_(True)
    y = mod(x)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_la_stochastic_in_training_deterministic_in_eval():
    x = torch.randn(2, 32, 8, 8)
    d1, d2 = global_stochastic_pool(x, 2, training=True)
    assert not torch.equal(d1, d2)  # two independent draws
    p = x.relu().flatten(2)
    assert all(bool((p == v.unsqueeze(-1)).any(-1).all()) for v in (d1, d2))  # each draw is one of the values
    e1, e2 = global_stochastic_pool(x, 2, training=False)
    torch.testing.assert_close(e1, (p * p).sum(-1) / p.sum(-1))  # the expectation sum(p * P)
    assert torch.equal(e1, e2)
    mod = create("la", 32, reduction=1)  # a wide MLP, so the draws reach the output
    assert not torch.equal(mod.train()(x), mod(x))
    assert torch.equal(mod.eval()(x), mod(x))


def test_csm_spatial_part_is_identity_at_init():
    mod = create("csm", 32)
    x = torch.randn(2, 32, 6, 6)
    channel_only = create("cam", 32)
    channel_only.load_state_dict(mod.channel.state_dict())
    torch.testing.assert_close(mod(x), channel_only(x))
    with torch.no_grad():
        mod.spatial.gamma.fill_(1.0)
    assert not torch.allclose(mod(x), channel_only(x))


def test_lgam_ladder_order_matters():
    mod = LGAM(32, groups=4).eval()
    x = torch.randn(2, 32, 5, 5)
    base = mod.channel_ladder(x).chunk(4, 1)
    bumped = x.clone()
    bumped[:, 8:16] += 1.0  # perturb group 2 only
    after = mod.channel_ladder(bumped).chunk(4, 1)
    torch.testing.assert_close(after[0], base[0])  # y_1 does not see x_2
    for k in (1, 2, 3):  # y_2, and through the ladder y_3 and y_4, do
        assert not torch.allclose(after[k], base[k])
    perm = torch.cat(x.chunk(4, 1)[::-1], 1)  # the same groups in reverse order give another output
    assert not torch.allclose(torch.cat(mod.channel_ladder(perm).chunk(4, 1)[::-1], 1), mod.channel_ladder(x))


def _count(mod, m, side):
    return count_params(mod), count_flops(mod, (1, m, side, side))


M, SIDE = 64, 7  # 49 positions


@pytest.mark.parametrize("name,params,flops", [
    # cam: W1 m -> m/16, W2 m/16 -> m, no bias (CSM section II)
    ("cam", 2 * M * M // 16, 2 * M * M // 16),
    # sam: B, C, D: 1x1 convs with bias to m (CSM: C channels each), gamma; B^T C and D S^T: (hw)^2 m each
    ("sam", 3 * (M * M + M) + 1, 3 * M * M * SIDE ** 2 + 2 * M * SIDE ** 4),
    ("csm", 2 * M * M // 16 + 3 * (M * M + M) + 1, 2 * M * M // 16 + 3 * M * M * SIDE ** 2 + 2 * M * SIDE ** 4),
    ("csm_spatial_first", 2 * M * M // 16 + 3 * (M * M + M) + 1,
     2 * M * M // 16 + 3 * M * M * SIDE ** 2 + 2 * M * SIDE ** 4),
    # nonlocal: theta, phi, g: m -> m/2 with bias; W_z: m/2 -> m with bias; BN(m); f g and theta^T phi
    ("nonlocal", 2 * M * M + 4 * M + M // 2, 2 * M * M * SIDE ** 2 + 2 * (M // 2) * SIDE ** 4),
    # sge (groups 4 here): gamma, beta per group; no multiply-adds (element-wise and a mean)
    ("sge", 2 * 4, 0),
    # la: MLP m -> m/16 -> m with biases, applied to two descriptors
    ("la", M * 4 + 4 + 4 * M + M, 2 * (M * 4 + 4 * M)),
    # lgam (4 groups of 16, r = 8): per group FC 16 -> 2 -> 16 with biases and BN1d(16)
    ("lgam", 4 * (16 * 2 + 2 + 2 * 16 + 16 + 2 * 16), 4 * (16 * 2 + 2 * 16)),
    # bam: channel FC m -> 4 -> m with biases + BN1d(m); spatial 1x1 m -> 4 + BN, two dilated 3x3 4 -> 4 + BN,
    # 1x1 4 -> 1 with bias, final BN(1) (Park et al. eq. 4)
    ("bam", (M * 4 + 4 + 4 * M + M + 2 * M) + (M * 4 + 8) + 2 * (9 * 16 + 8) + 5 + 2,
     2 * M * 4 + (M * 4 + 2 * 9 * 16 + 4) * SIDE ** 2),
    ("ulsam", 2 * M, 2 * M * SIDE ** 2),
])
def test_parameter_and_cost_formulas(name, params, flops):
    assert _count(create(name, M, 4 if get_entry(name).takes_groups else None), M, SIDE) == (params, flops)


@pytest.mark.parametrize("key_reduction", [1, 8])
def test_sam_key_reduction_follows_csm_by_default_and_danet_on_request(key_reduction):
    mod = create("sam", M, key_reduction=key_reduction)
    assert mod.query.out_channels == mod.key.out_channels == M // key_reduction and mod.value.out_channels == M


def test_csm_order():
    x = torch.randn(2, 16, 5, 5)
    first = create("csm", 16)
    with torch.no_grad():
        first.spatial.gamma.fill_(0.5)
    second = create("csm_spatial_first", 16)
    second.load_state_dict(first.state_dict())
    torch.testing.assert_close(first(x), first.spatial(first.channel(x)))
    torch.testing.assert_close(second(x), second.channel(second.spatial(x)))
    assert not torch.allclose(first(x), second(x))
    assert create("csm", 16, order="spatial-first").order == "spatial-first"
    with pytest.raises(ModuleConfigError, match="order must be one of"):
        create("csm", 16, order="random")


def test_sge_follows_its_equations():
    mod = create("sge", 8, 2)
    with torch.no_grad():
        mod.weight.copy_(torch.tensor([0.5, -1.0]))
        mod.bias.copy_(torch.tensor([0.2, 0.3]))
    x = torch.randn(3, 8, 4, 5, dtype=torch.float64)
    xg = x.view(3, 2, 4, 20)
    c = (xg * xg.mean(-1, keepdim=True)).sum(2)
    c = (c - c.mean(-1, keepdim=True)) / (c.var(-1, unbiased=False, keepdim=True).sqrt() + 1e-5)
    gate = torch.sigmoid(c * torch.tensor([0.5, -1.0])[:, None] + torch.tensor([0.2, 0.3])[:, None])
    torch.testing.assert_close(mod.double()(x), (xg * gate.unsqueeze(2)).view_as(x))
    one = create("sge", 8, 2)(torch.randn(2, 8, 1, 1))  # a 1x1 map: normalised similarity 0, finite output
    assert torch.isfinite(one).all()


def test_lgam_channel_mask_has_the_papers_relu():
    """LGAM eq. 2: M = sigma(ReLU(BN(MLP(s)))) lies in [0.5, 1), so a group's output is (1 + M) x in [1.5 x, 2 x)."""
    mod = LGAM(16, groups=1).eval()
    x = torch.rand(4, 16, 3, 3) + 0.1
    ratio = mod.channel_ladder(x) / x
    assert ratio.min() >= 1.5 - 1e-6 and ratio.max() < 2


def test_bam_spatial_branch_ends_in_batchnorm():
    mod = create("bam", 32)
    assert isinstance(mod.spatial[-1], torch.nn.BatchNorm2d) and mod.spatial[-1].num_features == 1


def test_la_mlp_outputs_pass_a_sigmoid_and_la_counts_on_meta():
    mod = create("la", 32)
    assert isinstance(mod.mlp[-1], torch.nn.Sigmoid)
    with torch.device("meta"):
        meta = create("la", 32)
    assert count_flops(meta, (1, 32, 6, 6)) == 2 * (32 * 2 + 2 * 32)  # the crash of issue 8: autocast on meta


def test_nonlocal_starts_as_identity():
    mod = create("nonlocal", 16)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(mod.eval()(x), x)
    assert mod.t.out_channels == mod.p.out_channels == mod.g.out_channels == 8 and mod.scale == 1.0


def test_quadratic_modules_declare_their_limit_once_in_the_registry():
    limits = {name: get_entry(name).max_positions for name in ALL}
    assert {n for n, v in limits.items() if v is not None} == {"csm", "csm_spatial_first", "sam", "nonlocal"}
    assert set(limits.values()) == {None, 1024}


def test_catalog_options_are_the_constructors_arguments():
    import inspect

    for name in ALL:
        entry = get_entry(name)
        params = list(inspect.signature(entry.load()).parameters)[1:]
        assert entry.options == tuple(p for p in params if p != "groups"), name
        assert ("groups" in params) == entry.takes_groups, name


def test_unknown_option_is_refused_before_construction():
    with pytest.raises(ModuleConfigError, match=r"module 'se': unknown option\(s\) reduction \(takes rd_ratio\)"):
        create("se", 32, reduction=4)
    with pytest.raises(ModuleConfigError, match="takes no options"):
        create("nonlocal", 32, reduction=4)


def test_third_party_modules_register_with_the_decorator():
    from nas_attn.modules import register_module

    @register_module("test_double", source="tests")
    def double(channels: int, scale: float = 2.0) -> torch.nn.Module:
        return torch.nn.Identity()

    try:
        entry = get_entry("test_double")
        assert entry.options == ("scale",) and entry.max_positions is None and entry.source == "tests"
        assert isinstance(create("test_double", 4, scale=3.0), torch.nn.Identity)
        with pytest.raises(ModuleConfigError, match="unknown option"):
            create("test_double", 4, shift=1)
        with pytest.raises(ModuleConfigError, match="already registered"):
            register_module("test_double")(lambda channels: None)
    finally:
        from nas_attn.modules.registry import _REGISTRY

        _REGISTRY.pop("test_double", None)


def test_la_stays_finite_under_mixed_precision():
    """Everything after LA's MLP stays float32 under autocast (it has no conv or matrix product to lower)."""
    mod = create("la", 32).train()
    x = (torch.randn(2, 32, 6, 6) * 1e4).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mod(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
