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


def test_registry_lists_every_spec_module():
    assert set(ALL) >= {"ulsam", "ulsam_official", "la", "lgam", "csm", "bam", "se", "cbam", "eca", "gc"}


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
    channel_only = torch.sigmoid(mod.channel(x.mean((2, 3))))[..., None, None] * x
    torch.testing.assert_close(mod(x), channel_only)
    with torch.no_grad():
        mod.gamma.fill_(1.0)
    assert not torch.allclose(mod(x), channel_only)


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
