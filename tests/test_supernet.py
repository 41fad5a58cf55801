"""Weight origins, weight inheritance and the one-shot supernet (nas_attn/weights.py, nas_attn/supernet.py).

The supernet's claim: on the path of any arch of its space it computes what ``build_model(arch)`` computes,
with the same tensors. It is checked for every candidate of every shipped space (archs chosen by a rule that
activates each candidate once: arch j takes choice j at every position, cycling) and for spaces that use
every op on a hand-written, a timm, a torchvision and a user backbone.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from searchutil import REPO

from nas_attn.arch import Placement
from nas_attn.build import build_model
from nas_attn.errors import ArchError
from nas_attn.space import load_space
from nas_attn.space.files import shipped_spaces_dir
from nas_attn.supernet import (
    build_supernet,
    candidate_key,
    path_state_dict,
    sample_path,
    set_path,
)
from nas_attn.weights import BACKBONE, inherit_weights

EVERY_OP = "search:\n  ops: [insert, substitute, inside, parallel]\n"


def covering_archs(space):
    """Archs of ``space`` in which every choice of every position appears: arch j takes choice j (cycling)."""
    choices = {pc.index: pc.choices() for pc in space.positions}
    n = max(len(c) for c in choices.values())
    return [space.arch([c[j % len(c)] for c in choices.values() if c[j % len(c)] is not None]) for j in range(n)]


def _same_outputs(net, model, x) -> None:
    for training in (False, True):  # train mode: batch statistics, and the head's dropout drawn alike
        net.train(training)
        model.train(training)
        with torch.no_grad():
            torch.manual_seed(1)
            a = net(x)
            torch.manual_seed(1)
            b = model(x)
        assert torch.equal(a, b), (training, (a - b).abs().max())


def check_paths(space, archs) -> tuple[int, int]:
    """Each arch's path in the supernet against its standalone model; returns (candidates that were active,
    candidates the supernet holds)."""
    torch.manual_seed(0)
    net = build_supernet(space)
    x = torch.randn(2, space.base.in_chans, space.base.input_size, space.base.input_size)
    active = set()
    for arch in archs:
        set_path(net, arch)
        state = path_state_dict(net, arch)
        model = build_model(arch)
        model.load_state_dict(state)  # strict: every tensor of the model, nothing else
        supernet_tensors = {t.data_ptr() for t in net.state_dict().values()}
        assert all(t.data_ptr() in supernet_tensors for t in state.values())  # the supernet's own tensors
        assert sum(p.numel() for p in model.parameters()) == sum(
            state[k].numel() for k, _ in model.named_parameters())
        _same_outputs(net, model, x)
        active |= {(p.position, p.op, candidate_key(p.module, p.groups)) for p in arch.placements}
    return len(active), sum(len(slot.candidates) for slot in net.slots.values())


@pytest.mark.parametrize("name", sorted(p.stem for p in shipped_spaces_dir().glob("*.yaml")))
def test_every_candidate_of_every_shipped_space_is_its_standalone_model(name):
    space = load_space(name)
    archs = covering_archs(space)
    covered, held = check_paths(space, [space.arch([]), *archs])
    assert covered == held > 0


def _space(tmp_path, backbone: str, positions: str, modules: str, extra: str = "", input_size: int = 32) -> object:
    path = tmp_path / "s.yaml"
    path.write_text(f"backbone: {backbone}\ndataset: {{name: fashion_mnist, input_size: {input_size}}}\n"
                    f"search:\n  positions: {positions}\n  modules: {modules}\n  groups: [2, 4]\n"
                    f"  ops: [insert, substitute, inside, parallel]\n{extra}")
    return load_space(path)


@pytest.mark.parametrize("backbone,positions,size", [
    ("{name: mobilenetv2, width: 0.5, small_input: true}", "[3, 5, 14, 17]", 32),
    ("{name: resnet18, width: 0.5, small_input: true}", "1-8", 32),
    ("{name: wrn16_8, small_input: true}", "1-6", 32),
    ("{name: 'timm:resnet18'}", "2-9", 64),
    ("{name: 'torchvision:mobilenet_v2'}", "2-8", 64),
    ("{name: 'py:user_cnn:small_cnn'}", "1-4", 64),
], ids=["mobilenetv2", "resnet18", "wrn-preact", "timm-resnet18", "tv-mobilenet_v2", "user"])
def test_every_op_on_every_kind_of_backbone(tmp_path, monkeypatch, backbone, positions, size):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))
    space = _space(tmp_path, backbone, positions, "[none, se, ulsam]", input_size=size)
    ops = Counter(op for pc in space.positions for op in pc.ops)
    assert set(ops) == {"insert", "substitute", "inside", "parallel"}, ops
    covered, held = check_paths(space, [space.arch([]), *covering_archs(space)])
    assert covered == held


def test_sampling_is_uniform_over_each_positions_choices():
    space = load_space("mobilenetv2_ulsam")
    rng = random.Random(0)
    draws = 3000
    seen: dict[int, Counter] = {pc.index: Counter() for pc in space.positions}
    for _ in range(draws):
        arch = sample_path(space, rng)
        chosen = {p.position: (p.module, p.groups, p.op) for p in arch.placements}
        for pc in space.positions:
            seen[pc.index][chosen.get(pc.index)] += 1
    for pc in space.positions:
        n = len(pc.choices())
        assert len(seen[pc.index]) == n  # every choice drawn, "none" among them
        expected = draws / n
        assert all(abs(c - expected) < 5 * expected ** 0.5 for c in seen[pc.index].values()), seen[pc.index]


def test_a_path_outside_the_space_is_refused():
    from dataclasses import replace

    space = load_space("smoke")
    net = build_supernet(space)
    with pytest.raises(ArchError, match="holds no se at position 14"):
        set_path(net, space.arch([Placement(14, "se", "insert")]))
    with pytest.raises(ArchError, match="module options"):  # (not validated here: set_path refuses it first)
        set_path(net, replace(space.arch([]), placements=[Placement(14, "ulsam", "insert", 2, {"k": 5})]))
    with pytest.raises(ArchError, match="settings are not the supernet's"):
        set_path(net, replace(space.arch([Placement(14, "ulsam", "insert", 2)]), width=1.0))
    assert all(slot.active is None for slot in net.slots.values())


@pytest.mark.parametrize("placement", [
    Placement(14, "ulsam", "substitute", 4), Placement(14, "se", "inside"), Placement(14, "se", "parallel"),
    Placement(14, "ulsam", "insert", 2)], ids=lambda p: p.op)
def test_inherited_weights_are_the_vanilla_backbones_for_every_kept_layer(placement):
    space = load_space("smoke")
    torch.manual_seed(0)
    vanilla = build_model(space.arch([])).state_dict()
    torch.manual_seed(1)
    model = build_model(space.arch([placement]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    done = inherit_weights(model, vanilla)
    after = model.state_dict()
    kept = {k: o.removeprefix(f"{BACKBONE}:") for k, o in model.weight_origins.items() if o.startswith(BACKBONE)}
    assert done.kept == len(kept) and done.new == len(after) - len(kept) > 0
    assert all(torch.equal(after[k], vanilla[source]) for k, source in kept.items())
    new = [k for k in after if k not in kept]
    assert all(torch.equal(after[k], before[k]) for k in new)  # the module's own initialisation, untouched
    lost = set(vanilla) - set(kept.values())
    if placement.op == "substitute":  # the substituted block's weights, and only those, are not carried over
        assert lost and all(k.startswith("layers.13.") for k in lost)
    else:
        assert not lost


def test_weights_of_another_backbone_are_refused():
    space = load_space("smoke")
    other = build_model(space.arch([]).__class__.from_json(
        space.arch([]).to_json().replace('"width": 0.5', '"width": 1.0'))).state_dict()
    model = build_model(space.arch([Placement(14, "ulsam", "insert", 2)]))
    with pytest.raises(ValueError, match="do not fit this arch's backbone"):
        inherit_weights(model, other)


# -- training the supernet and scoring archs with it (real images: the bundled Fashion-MNIST sample) ----------
@pytest.fixture(scope="module")
def smoke_splits():
    from nas_attn.data import load_dataset, make_splits

    return make_splits(load_dataset("fashion_mnist", download=False, input_size=32), 0.1, 0, train_subset=600,
                       val_subset=300)


def test_a_trained_supernet_scores_each_arch_as_its_standalone_model_with_those_weights(smoke_splits):
    """Scoring = the path's BatchNorm statistics re-estimated, then validation: the same figures as the
    standalone model given the path's weights and the same re-estimation; deterministic; the loss went down."""
    from dataclasses import replace

    from nas_attn.data.loader import device_images
    from nas_attn.oneshot import score_archs, train_supernet
    from nas_attn.train import evaluate, recalibrate_batchnorm

    space = load_space("smoke")
    space = replace(space, base=replace(space.base, width=0.35))
    recipe = replace(space.recipe, epochs=2, batch_size=32, lr=0.05)
    trained = train_supernet(space, smoke_splits, recipe, seed=3, device="cpu")
    assert len(trained.history) == 2 and trained.history[1].train_loss < trained.history[0].train_loss
    archs = covering_archs(space)[:4]
    trained_state = {k: v.clone() for k, v in trained.net.state_dict().items()}
    scores = score_archs(trained, archs, smoke_splits, bn_images=256)
    after = trained.net.state_dict()  # the trained BatchNorm statistics are back after scoring
    assert all(torch.equal(after[k], v) for k, v in trained_state.items())
    assert scores == score_archs(trained, archs, smoke_splits, bn_images=256)
    assert all(0.0 <= s.top1 <= 1.0 for s in scores) and len({s.loss for s in scores}) == len(archs)
    assert all(slot.active is None for slot in trained.net.slots.values())
    t = trained.trainer
    val, _ = device_images(smoke_splits.val, t.device, 2**30)
    for arch, score in zip(archs, scores, strict=True):
        model = build_model(arch)
        model.load_state_dict(path_state_dict(trained.net, arch))
        recalibrate_batchnorm(model, t.train, 256, t.batch_size, t.device, t.prep)
        alone = evaluate(model, val, 256, t.device, t.prep)
        assert alone.top1 == score.top1 and alone.loss == pytest.approx(score.loss, rel=1e-6)


def test_supernet_training_resumed_from_a_saved_state_ends_with_the_uninterrupted_weights(smoke_splits, tmp_path):
    """What a search's supernet trial checkpoints after each epoch is enough: stopped after epoch 1 and resumed
    from the file in a fresh call, it ends bit for bit where the uninterrupted run ends."""
    from dataclasses import replace

    from nas_attn.oneshot import train_supernet

    space = load_space("smoke")
    space = replace(space, base=replace(space.base, width=0.35))
    recipe = replace(space.recipe, epochs=2, batch_size=64, lr=0.05)
    saved = tmp_path / "supernet.pt"

    def keep_first(epoch, state):
        if epoch.epoch == 1:
            torch.save(state(), saved)

    whole = train_supernet(space, smoke_splits, recipe, seed=5, device="cpu", report=keep_first)
    resumed = train_supernet(space, smoke_splits, recipe, seed=5, device="cpu",
                             resume=torch.load(saved, weights_only=True))
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in whole.history]
    a, b = whole.net.state_dict(), resumed.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
