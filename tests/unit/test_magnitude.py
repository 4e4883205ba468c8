import copy

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

import bertcompress as bc
from bertcompress.core.errors import BertCompressError
from bertcompress.evaluation.size import size_on_disk
from bertcompress.methods.pruning.empty_units import remove_empty_ffn_neurons
from bertcompress.methods.pruning.magnitude import GradualMasking, MagnitudePruning
from bertcompress.methods.pruning.masks import (FixedMask, MaskRule, attach_masks, bake_masks, block_scores,
                                                compute_masks, keep_all_but_lowest, magnitude_scores, mask_of,
                                                sparsity_of)
from bertcompress.methods.pruning.schedules import CubicSchedule, cubic_schedule
from bertcompress.methods.pruning.sparse_linear import (SparseLinear, choose_kernel, pack_bits, storage_bytes,
                                                        unpack_bits)
from bertcompress.training.hooks import StepState
from tests.conftest import random_batch, tiny_model, toy_task


def scores(*shapes: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {f"l{i}": torch.rand(shape, generator=generator) for i, shape in enumerate(shapes)}


def context(model, tokenizer) -> bc.Context:
    return bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=copy.deepcopy(model),
                      train=bc.TrainConfig(batch_size=8, max_length=16))


# ---- masks -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.95])
def test_unstructured_masks_hit_the_sparsity_exactly(scope, sparsity):
    given = scores((32, 48), (48, 32), (7, 13))
    masks = compute_masks(given, sparsity, MaskRule(), scope)
    if scope == "global":
        total = sum(s.numel() for s in given.values())
        assert sum(int((~m).sum()) for m in masks.values()) == round(sparsity * total)
    else:
        assert all(int((~masks[n]).sum()) == round(sparsity * s.numel()) for n, s in given.items())


def test_ties_are_broken_deterministically_and_exactly():
    masks = compute_masks({"w": torch.zeros(10, 10)}, 0.37, MaskRule(), "layer")
    assert int((~masks["w"]).sum()) == 37 and torch.equal(masks["w"], compute_masks({"w": torch.zeros(10, 10)},
                                                                                     0.37, MaskRule(), "layer")["w"])


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 4)])
def test_n_m_keeps_exactly_n_in_every_group_of_m(n, m):
    masks = compute_masks(scores((16, 32), (8, 64)), 1 - n / m, MaskRule("n:m", n, m))
    for mask in masks.values():
        assert (mask.reshape(mask.shape[0], -1, m).sum(-1) == n).all()


def test_n_m_keeps_the_largest_of_each_group():
    row = torch.tensor([[0.1, 0.9, 0.5, 0.2, 3.0, 2.0, 1.0, 0.0]])
    mask = compute_masks({"w": row}, 0.5, MaskRule("n:m", 2, 4))["w"]
    assert mask.tolist() == [[False, True, True, False, True, True, False, False]]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_blocks_are_removed_or_kept_whole(scope):
    b = 4
    given = scores((32, 48), (48, 32))
    masks = compute_masks(given, 0.6, MaskRule("block", block_size=b), scope)
    blocks_total, blocks_removed = 0, 0
    for mask in masks.values():
        tiles = mask.reshape(mask.shape[0] // b, b, mask.shape[1] // b, b).permute(0, 2, 1, 3).flatten(2)
        assert (tiles.all(-1) | ~tiles.any(-1)).all()  # every tile all kept or all removed
        blocks_total += tiles.shape[0] * tiles.shape[1]
        blocks_removed += int((~tiles.any(-1)).sum())
    if scope == "global":
        assert blocks_removed == round(0.6 * blocks_total)


def test_blocks_are_ranked_by_their_norm():
    weight = torch.ones(4, 4)
    weight[:2, 2:] = 5  # the strongest block
    weight[2:, :2] = 0.1  # the weakest block
    for norm in ("l2", "l1"):
        mask = compute_masks({"w": weight}, 0.25, MaskRule("block", block_size=2, block_norm=norm))["w"]
        assert not mask[2:, :2].any() and int(mask.sum()) == 12
        assert compute_masks({"w": weight}, 0.75, MaskRule("block", block_size=2, block_norm=norm))["w"][:2, 2:].all()



def test_block_scores_are_each_tiles_norm_or_sum():
    scores = torch.tensor([[1.0, -2.0, 0.0, 3.0, 1.0, 1.0],
                           [2.0, 4.0, -1.0, 0.0, 1.0, -1.0],
                           [0.0, 0.0, 5.0, 0.0, 2.0, 2.0],
                           [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]])
    tiles = [[[1.0, -2.0, 2.0, 4.0], [0.0, 3.0, -1.0, 0.0], [1.0, 1.0, 1.0, -1.0]],
             [[0.0, 0.0, 0.0, -1.0], [5.0, 0.0, 0.0, 1.0], [2.0, 2.0, 0.0, 0.0]]]
    expected = {"sum": [[sum(t) for t in row] for row in tiles],
                "l1": [[sum(map(abs, t)) for t in row] for row in tiles],
                "l2": [[sum(v * v for v in t) ** 0.5 for t in row] for row in tiles]}
    for norm, values in expected.items():
        assert torch.allclose(block_scores(scores, 2, norm), torch.tensor(values)), norm
    assert torch.allclose(block_scores(scores, 2), torch.tensor(expected["l2"]))  # the default


def test_exactly_count_entries_are_removed_with_ties_in_index_order():
    flat = torch.tensor([3.0, 1.0, 2.0, 1.0, 2.0, 2.0, 0.5])
    assert keep_all_but_lowest(flat, 4).tolist() == [True, False, False, False, True, True, False]
    assert keep_all_but_lowest(flat, 0).all() and not keep_all_but_lowest(flat, 7).any()


def test_fixed_mask_can_be_replaced_and_sparsity_of_nothing_is_zero():
    mask = FixedMask(torch.tensor([True, False]))
    mask.set_mask(torch.tensor([False, True]))
    assert torch.equal(mask(torch.tensor([2.0, 3.0])), torch.tensor([0.0, 3.0]))
    assert sparsity_of({}) == 0.0 and sparsity_of({"x": torch.zeros(0)}) == 0.0


def test_global_ranks_across_layers_and_per_layer_within_each():
    given = {"small": torch.rand(16, 16) * 0.01, "large": torch.rand(16, 16) + 1}
    global_masks = compute_masks(given, 0.5, MaskRule(), "global")
    layer_masks = compute_masks(given, 0.5, MaskRule(), "layer")
    assert not global_masks["small"].any() and global_masks["large"].all()  # one threshold: small layer goes
    assert sparsity_of({"s": layer_masks["small"]}) == sparsity_of({"l": layer_masks["large"]}) == 0.5


def test_fixed_mask_parametrization_masks_then_bakes():
    linear = nn.Linear(8, 4)
    masks = compute_masks(magnitude_scores({"x": linear}), 0.5, MaskRule(), "layer")
    original = linear.weight.detach().clone()
    attach_masks({"x": linear}, masks)
    assert torch.equal(linear.weight, original * masks["x"])
    linear(torch.randn(2, 8)).sum().backward()
    assert (linear.parametrizations.weight.original.grad[~masks["x"]] == 0).all()  # removed weights get no gradient
    bake_masks({"x": linear})
    assert type(linear) is nn.Linear and sparsity_of({"x": linear.weight}) == 0.5


# ---- schedule ----------------------------------------------------------------------------------------

def test_cubic_schedule_start_middle_end():
    schedule = CubicSchedule(final_sparsity=0.8, begin_step=10, end_step=20, initial_sparsity=0.0)
    assert schedule.sparsity_at(0) == 0.0 and schedule.sparsity_at(10) == 0.0
    assert schedule.sparsity_at(15) == pytest.approx(0.8 - 0.8 * 0.5**3)  # s_f + (s_i - s_f)(1 - 1/2)^3 = 0.7
    assert schedule.sparsity_at(20) == schedule.sparsity_at(99) == 0.8
    values = [schedule.sparsity_at(t) for t in range(10, 21)]
    assert values == sorted(values)  # never falls
    assert values[1] - values[0] > values[-1] - values[-2]  # fast first, slow at the end


def test_schedule_warmup_cooldown_in_steps_or_fractions_and_update_frequency():
    schedule = cubic_schedule(100, 0.9, warmup=0.1, cooldown=20, frequency=7)
    assert (schedule.begin_step, schedule.end_step) == (10, 80)
    assert [t for t in range(101) if schedule.updates_at(t)] == [17, 24, 31, 38, 45, 52, 59, 66, 73, 80]


def test_schedule_that_ends_before_it_starts_is_an_error():
    with pytest.raises(BertCompressError, match="schedule: pruning would end .* before it starts"):
        cubic_schedule(10, 0.5, warmup=6, cooldown=0.5)
    with pytest.raises(BertCompressError, match="warmup"):
        cubic_schedule(10, 0.5, warmup=2.5)
    with pytest.raises(BertCompressError, match="initial_sparsity"):
        CubicSchedule(0.5, 0, 10, initial_sparsity=0.6)


def test_gradual_hook_raises_sparsity_on_schedule():
    model = tiny_model()
    linears = {n: model.get_submodule(n) for n in ("bert.encoder.layer.0.intermediate.dense",
                                                   "bert.encoder.layer.1.output.dense")}
    attach_masks(linears, compute_masks(magnitude_scores(linears), 0.0, MaskRule(), "global"))
    hook = GradualMasking(list(linears), MaskRule(), "global", cubic_schedule(8, 0.75, frequency=2))
    seen = []
    for step in range(1, 9):
        hook.after_step(model, StepState(step, 8))
        seen.append(sparsity_of({n: mask_of(m) for n, m in linears.items()}))
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[1] > 0 and seen[-1] == 0.75
    assert seen[2] == seen[1]  # no update between two scheduled steps


def test_gradual_pruning_reaches_the_target_at_the_end_of_training(tokenizer):
    model = tiny_model()
    config = MagnitudePruning(sparsity=0.8, schedule="gradual", max_steps=6, prune_every=2, cooldown=1,
                              remove_empty_neurons=False, distill=False)
    report = bc.compress(model, config, context(model, tokenizer))
    assert report.metrics["train_steps"] == 6 and report.metrics["ramp_steps"] == [0, 5]
    assert report.metrics["sparsity"] == pytest.approx(0.8, abs=1e-4)
    pruned = [m for m in model.modules() if isinstance(m, SparseLinear)]
    assert len(pruned) == 12
    total = sum(m.in_features * m.out_features for m in pruned)
    assert sum(m.nnz for m in pruned) == total - round(0.8 * total)



def _zeros_per_linear(model) -> dict[str, tuple[int, int]]:
    """(zero weights, all weights) of every encoder Linear, however it is stored."""
    counts = {}
    for name, module in model.named_modules():
        if ".encoder." in name and isinstance(module, (nn.Linear, SparseLinear)):
            weight = module.dense_weight() if isinstance(module, SparseLinear) else module.weight
            counts[name] = (int((weight == 0).sum()), weight.numel())
    return counts


@pytest.mark.parametrize("schedule", ["one_shot", "gradual"])
def test_scope_global_ranks_across_linears_and_layer_prunes_each_alike(schedule, tokenizer):
    """One Linear's weights lifted above 1 in magnitude, another's scaled down 100x: one global threshold keeps
    all of the first and none of the second; per-Linear thresholds remove exactly half of each."""
    big, small = "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.attention.output.dense"
    counts = {}
    for scope in ("global", "layer"):
        model = tiny_model()
        with torch.no_grad():
            weight = model.get_submodule(big).weight
            weight.copy_(weight.sign() * (weight.abs() + 1))
            model.get_submodule(small).weight.mul_(0.01)
        extra = dict(max_steps=4, prune_every=1, cooldown=1, learning_rate=1e-6) if schedule == "gradual" else {}
        config = MagnitudePruning(sparsity=0.5, scope=scope, schedule=schedule, distill=False,
                                  remove_empty_neurons=False, **extra)
        bc.compress(model, config, context(model, tokenizer))
        counts[scope] = _zeros_per_linear(model)
        assert len(counts[scope]) == 12
        total = sum(n for _, n in counts[scope].values())
        assert sum(z for z, _ in counts[scope].values()) == total // 2
    assert all(zeros == n // 2 for zeros, n in counts["layer"].values()), counts["layer"]
    assert counts["global"][big][0] == 0 and counts["global"][small] == (1024, 1024)


# ---- compact storage ---------------------------------------------------------------------------------

def masked_linear(shape=(384, 384), sparsity=0.9, pattern="unstructured", block_size=16, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(shape[1], shape[0])
    mask = compute_masks(magnitude_scores({"x": linear}), sparsity, MaskRule(pattern, block_size=block_size),
                         "layer")["x"]
    with torch.no_grad():
        linear.weight.mul_(mask)
    return linear


def test_bit_packing_round_trips():
    flags = torch.rand(7, 13) > 0.5
    assert torch.equal(unpack_bits(pack_bits(flags), flags.numel()).view(7, 13), flags)


@pytest.mark.parametrize("sparsity,pattern,storage", [(0.5, "unstructured", "bitmask"), (0.95, "unstructured", "index"),
                                                      (0.7, "block", "block"), (0.5, "n:m", "bitmask")])
def test_sparse_linear_matches_the_masked_dense_linear(sparsity, pattern, storage):
    linear = masked_linear((96, 64), sparsity, pattern)
    x = torch.randn(3, 5, 64)
    kernels = ["dense", "csr"] + (["bsr"] if pattern == "block" else [])
    for kernel in kernels:
        module = SparseLinear.from_linear(linear, block_size=16 if pattern == "block" else 0, kernel=kernel)
        assert module.storage == storage
        assert torch.equal(module.dense_weight(), linear.weight)
        with torch.no_grad():
            assert (module(x) - linear(x)).abs().max() <= 1e-5


def test_block_storage_keeps_tiles_that_hold_zeros():
    linear = masked_linear((32, 32), 0.5, "block")
    with torch.no_grad():
        row, col = linear.weight.nonzero()[0].tolist()
        linear.weight[row, col] = 0  # a zero inside a kept tile: elementwise formats would need more bytes
    module = SparseLinear.from_linear(linear, block_size=16)
    assert module.storage == "block" and torch.equal(module.dense_weight(), linear.weight)


@pytest.mark.parametrize("kernel", ["csr", "bsr"])
def test_gradients_flow_through_sparse_kernels_to_the_input(kernel):
    linear = masked_linear((32, 32), 0.7, "block")
    module = SparseLinear.from_linear(linear, block_size=16, kernel=kernel)
    x = torch.randn(2, 32, requires_grad=True)
    module(x).sum().backward()
    assert torch.allclose(x.grad, linear.weight.detach().sum(0).expand(2, 32), atol=1e-5)


def test_storage_is_the_smallest_form_for_the_mask():
    for sparsity in (0.3, 0.6, 0.9, 0.97):
        mask = masked_linear((64, 300), sparsity).weight != 0
        sizes = storage_bytes(mask)
        module = SparseLinear.from_linear(masked_linear((64, 300), sparsity))
        assert module.storage == min(sizes, key=sizes.get)
        assert sum(t.numel() * t.element_size() for n, t in module.state_dict().items() if n != "bias") == \
            sizes[module.storage]


def test_sparse_linear_saves_smaller_than_dense_at_90_percent(tmp_path):
    linear = masked_linear((384, 384), 0.9)
    save_file(dict(linear.state_dict()), tmp_path / "dense.safetensors")
    save_file(dict(SparseLinear.from_linear(linear).state_dict()), tmp_path / "sparse.safetensors")
    dense, sparse = ((tmp_path / f"{k}.safetensors").stat().st_size for k in ("dense", "sparse"))
    assert sparse < 0.17 * dense  # ~0.55 of 4 bytes per weight + bias


def test_kernel_choice_follows_the_measured_threshold():
    assert choose_kernel(0.5) == choose_kernel(0.1) == "dense"
    assert choose_kernel(0.05) == "csr" and choose_kernel(0.04, block_size=16) == "bsr"
    assert choose_kernel(0.04, block_size=4) == "csr"


def test_sparse_linear_with_a_built_sparse_kernel_deep_copies():
    module = SparseLinear.from_linear(masked_linear((64, 64), 0.97), kernel="csr")
    x = torch.randn(2, 64)
    reference = module(x)
    assert torch.equal(copy.deepcopy(module)(x), reference)


@pytest.mark.parametrize("config", [MagnitudePruning(sparsity=0.9),
                                    MagnitudePruning(sparsity=0.97, scope="layer"),
                                    MagnitudePruning(pattern="block", block_size=8, sparsity=0.75),
                                    MagnitudePruning(pattern="n:m", n=1, m=4)], ids=lambda c: c.pattern)
def test_compressed_model_is_smaller_and_reloads_to_identical_logits(config, tmp_path, tokenizer):
    model = tiny_model("distilbert" if config.pattern == "n:m" else "bert")
    before = size_on_disk(model)["weights"]
    report = bc.compress(model, config, context(model, tokenizer))
    batch = random_batch()
    with torch.no_grad():
        logits = model(**batch).logits
    assert report.modules_changed == 12 and report.bytes_after < report.bytes_before
    assert size_on_disk(model)["weights"] < before
    bc.save(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(bc.load(tmp_path / "m")(**batch).logits, logits)



@pytest.mark.parametrize("pattern", ["unstructured", "block"])
def test_stored_bytes_fall_monotonically_with_sparsity(pattern, tmp_path, tokenizer):
    """The README's promise: more sparsity, fewer bytes, in memory and on disk."""
    in_memory, on_disk = [], []
    for sparsity in (0.0, 0.2, 0.4, 0.6, 0.8, 0.95):
        model = tiny_model()
        config = MagnitudePruning(sparsity=sparsity, pattern=pattern, block_size=8)
        report = bc.compress(model, config, context(model, tokenizer))
        in_memory.append(report.bytes_after)
        on_disk.append(size_on_disk(model)["weights"])
    assert all(a > b for a, b in zip(in_memory, in_memory[1:])), in_memory
    assert all(a > b for a, b in zip(on_disk, on_disk[1:])), on_disk


# ---- empty units -------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_empty_ffn_neurons_are_removed_without_changing_outputs(family):
    model = tiny_model(family)
    layer = model.base_model.encoder.layer[0] if family == "bert" else model.distilbert.transformer.layer[0]
    first, second = (layer.intermediate.dense, layer.output.dense) if family == "bert" else \
        (layer.ffn.lin1, layer.ffn.lin2)
    with torch.no_grad():
        first.weight[[1, 5, 7]] = 0  # outputs act(bias): folded into the second bias
        second.weight[:, [5, 9, 11]] = 0  # contributes nothing
        reference = model(**random_batch()).logits
    assert remove_empty_ffn_neurons(model, pruned=["something.else"]) == {}  # not pruned here: left alone
    assert remove_empty_ffn_neurons(model) == {0: 5}
    after = (layer.intermediate.dense if family == "bert" else layer.ffn.lin1).out_features
    with torch.no_grad():
        assert after == 43 and (model(**random_batch()).logits - reference).abs().max() <= 1e-5


# ---- recovery ----------------------------------------------------------------------------------------

def hidden_distance(model, teacher) -> float:
    batch = random_batch()
    with torch.no_grad():
        ours = model(**batch, output_hidden_states=True).hidden_states[1:]
        theirs = teacher(**batch, output_hidden_states=True).hidden_states[1:]
    return sum(float((a - b).pow(2).mean()) for a, b in zip(ours, theirs))


def test_recovery_keeps_the_masks_and_hidden_distillation_pulls_towards_the_teacher(tokenizer):
    teacher = tiny_model()
    distances = {}
    for weight in (0.0, 20.0):
        model = copy.deepcopy(teacher)
        ctx = context(teacher, tokenizer)
        report = bc.compress(model, MagnitudePruning(sparsity=0.6, recovery_epochs=3, learning_rate=1e-3,
                                                     hidden_distill_weight=weight), ctx)
        assert report.metrics["sparsity"] == pytest.approx(0.6, abs=1e-3) and report.metrics["train_steps"] == 15
        distances[weight] = hidden_distance(model, ctx.teacher)
    assert distances[20.0] < 0.8 * distances[0.0]


def test_label_weight_sets_the_mix_of_labels_and_teacher(tokenizer):
    """The teacher always says class 0 while the labels are balanced: soft targets alone (label_weight 0) pull
    the student towards class 0; labels alone (label_weight 1) do not."""
    teacher = tiny_model(seed=1)
    with torch.no_grad():
        teacher.classifier.bias.copy_(torch.tensor([8.0, -8.0]))
    class0 = {}
    for label_weight in (0.0, 1.0):
        model = tiny_model()
        ctx = bc.Context(task=toy_task(), tokenizer=tokenizer, teacher=teacher,
                         train=bc.TrainConfig(batch_size=8, max_length=16))
        bc.compress(model, MagnitudePruning(sparsity=0.0, recovery_epochs=4, learning_rate=1e-2,
                                            label_weight=label_weight), ctx)
        with torch.no_grad():
            class0[label_weight] = float(model(**random_batch(8)).logits.softmax(-1)[:, 0].mean())
    assert class0[0.0] > 0.95 and class0[1.0] < 0.8


# ---- bad inputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,named", [
    (dict(sparsity=1.0), "sparsity"), (dict(sparsity=-0.1), "sparsity"),
    (dict(pattern="n:m", n=5, m=4), "n"), (dict(pattern="rows"), "pattern"),
    (dict(pattern="n:m", n=2, m=4, sparsity=0.7), "sparsity"), (dict(block_size=0), "block_size"),
    (dict(schedule="gradual", warmup=0.6, cooldown=0.4), "schedule"), (dict(scope="model"), "scope"),
    (dict(initial_sparsity=0.7, sparsity=0.5), "initial_sparsity"),
    (dict(hidden_distill_weight=1.0, distill=False), "hidden_distill_weight"),
    (dict(label_weight=0.0, distill=False), "label_weight"), (dict(label_weight=1.5), "label_weight"),
])
def test_bad_configs_name_the_field(fields, named):
    with pytest.raises(BertCompressError, match=rf"MagnitudePruning\.{named}"):
        MagnitudePruning(**fields)


@pytest.mark.parametrize("config,named", [
    (MagnitudePruning(pattern="n:m", n=2, m=5), r"m: 5 does not divide .* allowed m: 1, 2, 4, 8, 16, 32"),
    (MagnitudePruning(pattern="block", block_size=5), r"block_size: 5 does not divide .* allowed: 1, 2, 4, 8, 16"),
    (MagnitudePruning(schedule="gradual", max_steps=4, warmup=3, cooldown=2), "schedule: pruning would end"),
    (MagnitudePruning(targets=["nothing"]), "targets"),
])
def test_bad_inputs_for_the_model_name_the_field(config, named, tokenizer):
    model = tiny_model()
    with pytest.raises(BertCompressError, match=named):
        bc.compress(model, config, context(model, tokenizer))


def test_mask_rule_and_sparsity_errors_name_the_field():
    with pytest.raises(BertCompressError, match=r"sparsity: must be in \[0, 1\)"):
        compute_masks(scores((4, 4)), 1.0, MaskRule())
    with pytest.raises(BertCompressError, match="n: must be in 1..m"):
        MaskRule("n:m", n=5, m=4)
    with pytest.raises(BertCompressError, match="kernel"):
        SparseLinear(4, 4, True, "bitmask", 0, kernel="bsr")


@pytest.mark.parametrize("fields", [dict(pattern="n:m", n=1, m=4), dict(sparsity=0.8, schedule="gradual"),
                                    dict(pattern="block", block_size=8)])
def test_config_round_trips_through_its_dict(fields):
    config = MagnitudePruning(**fields)
    data = {k: v for k, v in config.to_dict().items() if k != "method"}
    assert MagnitudePruning(**data) == config
    if config.pattern == "n:m":
        assert config.sparsity == 0.75

