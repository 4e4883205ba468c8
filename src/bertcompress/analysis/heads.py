"""Attention-head analysis of one model on one task: Kovaleva patterns, Voita roles, Michel ablations and
gradient importance, returned as tables and written as CSV, Markdown and heatmaps."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from bertcompress.analysis.ablation import AblationResult, ablate_heads
from bertcompress.analysis.attention import attention_maps, iter_batches, layout_of, special_token_ids
from bertcompress.analysis.patterns import BLOCK_MIN, DOMINANT_MIN, MIXED_MIN, PATTERNS, PatternTally, counts_per_layer
from bertcompress.analysis.plots import pattern_heatmap, value_heatmap
from bertcompress.analysis.roles import (POSITIONAL_MIN, RARE_LIFT, RARE_MIN, RoleTally, frequency_tensor,
                                         token_frequencies)
from bertcompress.core.errors import BertCompressError
from bertcompress.data.batching import Encoded, encode
from bertcompress.data.tasks import Task
from bertcompress.files import check_output_path, write_atomically
from bertcompress.methods.pruning.importance import gradient_importance
from bertcompress.reports.tables import markdown_table

FILES = ("head_patterns.csv", "head_roles.csv", "head_ablation.csv", "heads.md", "head_patterns.png",
         "head_ablation.png", "head_importance.png")


@dataclass
class HeadAnalysis:
    patterns: list[dict]  # one row per head, see PatternTally.rows
    roles: list[dict]  # one row per head, see RoleTally.rows
    ablation: AblationResult
    importance: list[list[float]]  # [layer][head] gradient importance, L2-normalised per layer
    task: str
    split: str
    examples: int

    def ablation_rows(self) -> list[dict]:
        rows = []
        for layer, heads in enumerate(self.ablation.without_head):
            for head, acc in enumerate(heads):
                row = {"layer": layer, "head": head, "accuracy_without": round(acc, 4),
                       "delta_without": round(acc - self.ablation.base, 4)}
                if self.ablation.only_head is not None:
                    row["accuracy_only_this_head"] = round(self.ablation.only_head[layer][head], 4)
                row["accuracy_layer_disabled"] = round(self.ablation.without_layer[layer], 4)
                row["gradient_importance"] = round(self.importance[layer][head], 4)
                rows.append(row)
        return rows

    def per_layer(self, rows: list[dict], key: str) -> list[list]:
        """A (layer, head) grid of one column of a per-head table."""
        grid: list[list] = [[] for _ in self.ablation.without_head]
        for row in rows:
            grid[row["layer"]].append(row[key])
        return grid


def _sample(task: Task, tokenizer, split: str, examples: int, max_length: int) -> Encoded:
    data = encode(task.split(split)[:examples], tokenizer, max_length)
    if len(data) == 0:
        raise BertCompressError(f"head analysis: task {task.name!r} split {split!r} has no examples")
    return data


def analyze_heads(model: nn.Module, task: Task, tokenizer, examples: int = 256, split: str = "validation",
                  max_length: int = 64, batch_size: int = 32, keep_one: bool = True) -> HeadAnalysis:
    """Every head analysis on the first `examples` of `split`; token frequencies come from the train split."""
    data = _sample(task, tokenizer, split, examples, max_length)
    patterns, roles = attention_statistics(model, data, task, tokenizer, max_length, batch_size)
    ablation = ablate_heads(model, data, keep_one, batch_size)
    importance = [s.tolist() for s in gradient_importance(model, data, "heads", batch_size)]
    return HeadAnalysis(patterns, roles, ablation, importance, task.name, split, len(data))


def attention_statistics(model: nn.Module, data: Encoded, task: Task, tokenizer, max_length: int = 64,
                         batch_size: int = 32) -> tuple[list[dict], list[dict]]:
    """Per-head Kovaleva pattern rows and Voita role rows over `data`; rarity counts come from the train split."""
    frequencies = token_frequencies(encode(task.split("train"), tokenizer, max_length).ids)
    special = special_token_ids(tokenizer)
    patterns, roles = PatternTally(), RoleTally()
    for batch in iter_batches(data, batch_size):
        maps, layout = attention_maps(model, batch), layout_of(batch, special)
        patterns.add(maps, layout)
        roles.add(maps, layout, frequency_tensor(batch["input_ids"], frequencies))
    return patterns.rows(), roles.rows()


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _pattern_section(analysis: HeadAnalysis) -> list[str]:
    counts = counts_per_layer(analysis.patterns)
    body = [[layer, *[counts[layer][p] for p in PATTERNS]] for layer in sorted(counts)]
    return ["## Attention patterns (Kovaleva et al.)", "",
            f"Majority label per head over {analysis.examples} examples. Rules: vertical+diagonal if marker and "
            f"±1-neighbour mass are both ≥ {MIXED_MIN}; vertical / diagonal if one is ≥ {DOMINANT_MIN}; block if "
            f"a pair's own-segment mass is ≥ {BLOCK_MIN}; else heterogeneous.", "",
            markdown_table(["layer", *PATTERNS], body), ""]


def _ablation_section(analysis: HeadAnalysis) -> list[str]:
    result, pct = analysis.ablation, (lambda v: f"{100 * v:.2f}")
    best = result.best_single_heads()
    body = []
    for layer, heads in enumerate(result.without_head):
        deltas = [acc - result.base for acc in heads]
        lone = f"{best[layer][0]} ({pct(best[layer][1])})" if best else "–"
        body.append([layer, pct(min(deltas)), pct(max(deltas)), lone, pct(result.without_layer[layer])])
    improving = result.improving_heads()
    listed = ", ".join(f"L{layer}H{head} (+{100 * delta:.2f})" for layer, head, delta in improving) or "none"
    return ["## Head ablation (Michel et al.)", "",
            f"Accuracy of the full model: {pct(result.base)}% ({analysis.split}, n={analysis.examples}). "
            "Δ in accuracy points; 'best lone head' keeps only that head in its layer.", "",
            markdown_table(["layer", "worst single removal Δ", "best single removal Δ", "best lone head (acc)",
                            "layer attention disabled (acc)"], body), "",
            f"Heads whose removal improves accuracy: {listed}", ""]


def _role_section(analysis: HeadAnalysis) -> list[str]:
    found = [r for r in analysis.roles if r["role"] != "none"]
    body = [[r["layer"], r["head"], r["role"], r["frac_previous"], r["frac_next"], r["frac_rare"],
             r["frac_rare_chance"]] for r in found]
    table = markdown_table(["layer", "head", "role", "previous", "next", "rare", "rare (chance)"], body) \
        if body else "No positional or rare-word heads found."
    return ["## Head roles (Voita et al.)", "",
            f"Positional: argmax at i-1 / i+1 for ≥ {POSITIONAL_MIN:.0%} of tokens. Rare-word: argmax on the "
            f"rarest token (train-split counts) for ≥ {RARE_MIN:.0%} of tokens and ≥ {RARE_LIFT}x chance.", "",
            table, ""]


def summary_markdown(analysis: HeadAnalysis) -> str:
    figures = ["## Heatmaps", "", "![patterns](head_patterns.png)", "![ablation](head_ablation.png)",
               "![importance](head_importance.png)", ""]
    lines = [f"# Attention-head analysis: {analysis.task}", "", *_pattern_section(analysis),
             *_ablation_section(analysis), *_role_section(analysis), *figures]
    return "\n".join(lines)


def write_analysis_files(analysis: HeadAnalysis, directory: Path) -> None:
    ablation = analysis.ablation_rows()
    _write_csv(directory / "head_patterns.csv", analysis.patterns)
    _write_csv(directory / "head_roles.csv", analysis.roles)
    _write_csv(directory / "head_ablation.csv", ablation)
    (directory / "heads.md").write_text(summary_markdown(analysis), encoding="utf-8")
    pattern_heatmap(analysis.per_layer(analysis.patterns, "label"), directory / "head_patterns.png",
                    "Majority attention pattern")
    deltas = [[100 * d for d in row] for row in analysis.per_layer(ablation, "delta_without")]
    value_heatmap(deltas, directory / "head_ablation.png", "Δ accuracy when the head is removed",
                  "Δ accuracy (points)", diverging=True, fmt="{:+.1f}")
    value_heatmap(analysis.importance, directory / "head_importance.png", "Gradient head importance",
                  "|∂loss/∂gate| (layer-normalised)")


def write_head_analysis(model: nn.Module, task: Task, tokenizer, out_dir: str | Path, examples: int = 256,
                        overwrite: bool = False, **options) -> Path:
    """Run `analyze_heads` and write FILES into `out_dir`, which only appears once complete; an earlier
    analysis there is replaced only with `overwrite`."""
    check_output_path(Path(out_dir), overwrite)
    analysis = analyze_heads(model, task, tokenizer, examples, **options)
    return write_atomically(Path(out_dir), lambda staging: write_analysis_files(analysis, staging),
                            overwrite=overwrite, kind="heads")
