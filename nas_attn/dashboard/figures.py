"""The dashboard's plotly figures, built from :class:`RunData`.

Placements are written everywhere as :meth:`~nas_attn.arch.Placement.short` writes them (the README's
notation: ``14:1 ulsam/g4`` inserted after layer 14, ``14:ulsam/g4/sub`` substituting it, ``/in`` inside its
residual branch, ``/par`` beside it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from nas_attn.arch import Arch
from nas_attn.dashboard.rundata import RunData
from nas_attn.predictions import agreement_text, predictions_table, rank_agreement
from nas_attn.results import default_reference_point, prediction_mask

RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), font=dict(family="sans-serif"))
_HOVER = ("%{fullData.name}<br>trial %{customdata[1]} (%{customdata[4]})<br>val acc %{y:.4f}<br>"
          "%{x:.2f} MFLOPs<br>%{customdata[3]:,} params<br>%{customdata[2]}<extra></extra>")


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def _custom(run_index: int, df: pd.DataFrame) -> list[list]:
    return [[run_index, int(r.trial), r.placements, int(r.params) if pd.notna(r.params) else None,
             r.status, (r.reason or "") if isinstance(r.reason, str) else ""] for r in df.itertuples()]


def _label(run: RunData, what: str, single: bool) -> str:
    """A legend entry: what it is, and for several runs which run (its run id only, not the whole path)."""
    return what if single else f"{run.run_dir.name}: {what}"


def _front_trace(i: int, run: RunData, colour: str, single: bool) -> go.Scatter:
    """The front joined by a step line; error bars of ± the seed spread where ``--reevaluate-front`` ran."""
    front = run.front
    spread = _num(front["reeval_val_std"]) if "reeval_val_std" in front else None
    error = dict(type="data", array=spread, visible=True, color=colour, thickness=1.5) if spread is not None else None
    return go.Scatter(x=_num(front["flops"]) / 1e6, y=_num(front["val_acc_final"]), mode="lines+markers",
                      name=_label(run, "Pareto front" + (" (± seed spread)" if spread is not None else ""), single),
                      legendgroup=str(i), line=dict(color=colour, width=2, shape="hv"), error_y=error,
                      marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color=colour, width=2.5)),
                      customdata=_custom(i, front), hovertemplate=_HOVER, meta={"kind": "front"})


def _status_traces(i: int, run: RunData, single: bool) -> list[go.Scatter]:
    traces = []
    for status, symbol, col in (("pruned", "x", "#999"), ("failed", "x-thin-open", "#d62728")):
        sub = run.trials[run.trials["status"] == status]
        if len(sub):
            # a failed trial has no accuracy: drawn at 0; a pruned one at its last (low-fidelity) accuracy
            traces.append(go.Scatter(
                x=_num(sub["flops"]) / 1e6, y=np.nan_to_num(_num(sub["val_acc_final"]), nan=0.0), mode="markers",
                name=_label(run, status, single), legendgroup=str(i),
                marker=dict(symbol=symbol, size=9, color=col, line=dict(width=1.5, color=col)),
                customdata=_custom(i, sub), hovertemplate=_HOVER, meta={"kind": status}))
    return traces


#: marker of each kind of prediction on the Pareto plot: open, apart from the trained (filled) points
_PREDICTED_SYMBOLS = {"oneshot": "circle-open", "inherit": "diamond-open"}


def _predicted_traces(i: int, run: RunData, colour: str, single: bool) -> list[go.Scatter]:
    """A run's predictions (complete ``inherit``/``oneshot`` trials), one open-marker trace per evaluation:
    their accuracy is a fine-tuned or supernet score, so they are never on the front line."""
    t = run.trials
    predicted = t[(t["status"] == "complete") & prediction_mask(t)]
    traces = []
    for evaluation, sub in predicted.groupby("evaluation", sort=True):
        traces.append(go.Scatter(
            x=_num(sub["flops"]) / 1e6, y=_num(sub["val_acc_final"]), mode="markers",
            name=_label(run, f"predicted ({evaluation})", single), legendgroup=str(i),
            marker=dict(symbol=_PREDICTED_SYMBOLS.get(str(evaluation), "circle-open"), size=9,
                        color="#555" if single else colour, line=dict(width=1.5)),
            customdata=_custom(i, sub), hovertemplate=_HOVER.replace("val acc", f"predicted val acc ({evaluation})"),
            meta={"kind": "predicted", "evaluation": str(evaluation)}))
    return traces


def _run_traces(i: int, run: RunData, single: bool) -> list[go.Scatter]:
    t, colour = run.trials, RUN_COLOURS[i % len(RUN_COLOURS)]
    done = t[(t["status"] == "complete") & ~prediction_mask(t)]
    marker = dict(size=10, line=dict(width=0.5, color="#333"))
    marker.update(dict(color=_num(done["params"]), colorscale="Viridis", showscale=True,
                       colorbar=dict(title="params")) if single else dict(color=colour))
    traces = [go.Scatter(x=_num(done["flops"]) / 1e6, y=_num(done["val_acc_final"]), mode="markers",
                         name=_label(run, "trials", single), legendgroup=str(i), marker=marker,
                         customdata=_custom(i, done), hovertemplate=_HOVER, meta={"kind": "complete"}),
              _front_trace(i, run, colour, single)]
    vanilla = done[done.get("vanilla", pd.Series(False, index=done.index)).fillna(False).astype(bool)]
    if len(vanilla):
        traces.append(go.Scatter(x=_num(vanilla["flops"]) / 1e6, y=_num(vanilla["val_acc_final"]),
                                 mode="markers+text", text=["vanilla"] * len(vanilla), textposition="bottom center",
                                 name=_label(run, "vanilla backbone", single), legendgroup=str(i),
                                 marker=dict(symbol="star", size=18, color="gold", line=dict(color="#333", width=1)),
                                 customdata=_custom(i, vanilla), hovertemplate=_HOVER, meta={"kind": "vanilla"}))
    return traces + _predicted_traces(i, run, colour, single) + _status_traces(i, run, single)


def seed_note(runs: list[RunData]) -> str:
    """How large seed noise is next to the accuracy differences shown, in one sentence."""
    spreads = [s for r in runs if "reeval_val_std" in r.front for s in _num(r.front["reeval_val_std"])
               if np.isfinite(s)]
    if spreads:
        seeds = int(max(_num(r.front["reeval_seeds"]).max() for r in runs if "reeval_seeds" in r.front))
        return (f"Error bars: ± the standard deviation of validation accuracy over {seeds} more seeds of each front "
                f"arch (mean {np.mean(spreads):.4f}); differences smaller than that are within seed noise.")
    return ("No seed spread measured for this run: differences of about a point can be seed noise at small "
            "budgets; search with --reevaluate-front K to measure it.")


def pareto(runs: list[RunData]) -> go.Figure:
    """Validation accuracy vs MFLOPs: every trial, the (trained) front joined, vanilla starred, predictions as
    open markers, failed/pruned apart."""
    fig = go.Figure()
    single = len(runs) == 1
    for i, run in enumerate(runs):
        for trace in _run_traces(i, run, single):
            fig.add_trace(trace)
    fig.update_layout(title="Validation accuracy vs MFLOPs (click a point for its detail)",
                      xaxis_title="MFLOPs (multiply-adds)", yaxis_title="validation accuracy", height=520,
                      legend=dict(orientation="h", y=-0.18), clickmode="event+select", **_LAYOUT)
    return fig


def _position_labels(trials: pd.DataFrame) -> dict[int, list[str]]:
    """Per searched position, each trial's choice there in the README's notation (or ``none``)."""
    archs = [Arch.from_json(a) for a in trials["arch"]]
    positions = sorted({p.position for a in archs for p in a.placements})
    labels: dict[int, list[str]] = {k: [] for k in positions}
    for a in archs:
        at: dict[int, list[str]] = {k: [] for k in positions}
        for p in a.placements:
            at[p.position].append(p.short())
        for k in positions:
            labels[k].append(" + ".join(sorted(at[k])) or "none")
    return labels


def parallel(runs: list[RunData]) -> go.Figure | None:
    """Parallel coordinates: the choice at each position against accuracy and MFLOPs (complete trials)."""
    frames = [r.trials[r.trials["status"] == "complete"] for r in runs]
    done = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if done is None or not len(done):
        return None
    dims = []
    for k, labels in _position_labels(done).items():
        cats = sorted(set(labels), key=lambda s: (s != "none", s))
        code = {c: i for i, c in enumerate(cats)}
        dims.append(dict(label=f"layer {k}", values=[code[v] for v in labels], tickvals=list(range(len(cats))),
                         ticktext=cats, range=[-0.5, len(cats) - 0.5]))
    dims.append(dict(label="MFLOPs", values=_num(done["flops"]) / 1e6))
    if "latency_ms" in done and done["latency_ms"].notna().any():
        dims.append(dict(label="latency (ms)", values=_num(done["latency_ms"])))
    dims.append(dict(label="params (k)", values=_num(done["params"]) / 1e3))
    dims.append(dict(label="val acc", values=_num(done["val_acc_final"])))
    fig = go.Figure(go.Parcoords(line=dict(color=_num(done["val_acc_final"]), colorscale="Viridis", showscale=True,
                                           colorbar=dict(title="val acc")), dimensions=dims))
    fig.update_layout(title="Choices per layer against accuracy and FLOPs (drag along an axis to filter)",
                      height=480, **{**_LAYOUT, "margin": dict(l=80, r=80, t=90, b=40)})
    return fig


def latency(runs: list[RunData]) -> go.Figure | None:
    """Measured latency against MFLOPs, where the runs measured it (the two disagree for these modules)."""
    fig = go.Figure()
    for i, run in enumerate(runs):
        done = run.trials[run.trials["status"] == "complete"]
        if "latency_ms" not in done or not done["latency_ms"].notna().any():
            continue
        fig.add_trace(go.Scatter(x=_num(done["flops"]) / 1e6, y=_num(done["latency_ms"]), mode="markers",
                                 name=_label(run, "trials", len(runs) == 1), customdata=_custom(i, done),
                                 marker=dict(size=9, color=RUN_COLOURS[i % len(RUN_COLOURS)]),
                                 hovertemplate=_HOVER.replace("val acc %{y:.4f}", "%{y:.3f} ms")))
    if not fig.data:
        return None
    fig.update_layout(title="Measured latency (batch 1) vs MFLOPs", xaxis_title="MFLOPs (multiply-adds)",
                      yaxis_title="latency (ms)", height=380, **_LAYOUT)
    return fig


def hypervolume(runs: list[RunData]) -> go.Figure | None:
    """Optuna's hypervolume of the front after each trial, one line per run, one fixed reference point."""
    objectives = runs[0].objectives
    frames = [r.trials for r in runs if len(r.trials)]
    allt = pd.concat(frames, ignore_index=True) if frames else None
    if allt is None or not (allt["status"] == "complete").any():
        return None
    ref = default_reference_point(allt[allt["status"] == "complete"], objectives)
    scale = float(np.prod([1e6 for o in objectives if o in ("flops", "params")]))  # accuracy x MFLOPs (x M params)
    fig = go.Figure()
    for i, run in enumerate(runs):
        hv = run.hypervolume(ref) if run.objectives == objectives else pd.DataFrame()
        if len(hv):
            fig.add_trace(go.Scatter(x=hv["trial"], y=hv["hypervolume"] / scale, mode="lines+markers",
                                     name=_label(run, "hypervolume", len(runs) == 1),
                                     line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)], shape="hv")))
    if not fig.data:
        return None
    units = {"val_acc": "accuracy", "flops": "MFLOPs", "params": "M params", "latency_ms": "ms"}
    ref_text = ", ".join(f"{o} {v / 1e6:.2f}M" if o in ("flops", "params") else f"{o} {v:.4g}"
                         for o, v in zip(objectives, ref, strict=True))
    unit = " x ".join(units[o] for o in objectives)
    fig.update_layout(title=f"Hypervolume of the front (Optuna) — reference point: {ref_text}",
                      xaxis_title="trial number", yaxis_title=f"hypervolume ({unit})", height=380,
                      showlegend=len(runs) > 1, **_LAYOUT)
    return fig


def predictions(runs: list[RunData]) -> go.Figure | None:
    """Predicted (x) against retrained (y) validation accuracy of the archs of each run's predicted front that
    were trained from scratch, with the rank agreement in the title; ``None`` where no run has one."""
    fig, notes, evaluations = go.Figure(), [], set()
    single = len(runs) == 1
    for i, run in enumerate(runs):
        table = predictions_table(run.trials)
        done = table[(table["status"] == "complete") & np.isfinite(table["predicted_val_acc"])
                     & np.isfinite(table["val_acc"])]
        if not len(done):
            continue
        evaluations.update(e for e in done["evaluation"] if isinstance(e, str))
        agreement = agreement_text(rank_agreement(table))
        notes.append(agreement if single else f"{run.run_dir.name}: {agreement}")
        custom = [[i, int(r.trial), int(r.retrain_of), r.placements, r.evaluation or "?"] for r in done.itertuples()]
        fig.add_trace(go.Scatter(
            x=done["predicted_val_acc"].to_numpy(dtype=float), y=done["val_acc"].to_numpy(dtype=float),
            mode="markers", name=_label(run, "retrained archs", single),
            marker=dict(size=11, color=RUN_COLOURS[i % len(RUN_COLOURS)], line=dict(width=0.5, color="#333")),
            customdata=custom, meta={"kind": "retrained"},
            hovertemplate=("%{fullData.name}<br>trial %{customdata[1]}, retraining trial %{customdata[2]}<br>"
                           "predicted (%{customdata[4]}) %{x:.4f}<br>retrained %{y:.4f}<br>%{customdata[3]}"
                           "<extra></extra>")))
    if not fig.data:
        return None
    how = f" ({', '.join(sorted(evaluations))})" if evaluations else ""
    fig.update_layout(title=f"Predicted{how} vs retrained validation accuracy — {'; '.join(notes)}",
                      xaxis_title="predicted validation accuracy",
                      yaxis_title="validation accuracy trained from scratch", height=420,
                      showlegend=not single, **_LAYOUT)
    return fig
