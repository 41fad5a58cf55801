"""The dashboard's plotly figures, built from :class:`RunData`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from nas_attn.arch import Arch
from nas_attn.dashboard.rundata import RunData
from nas_attn.results import default_reference_point

RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), font=dict(family="sans-serif"))


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def _custom(run_index: int, df: pd.DataFrame) -> list[list]:
    return [[run_index, int(r.trial), r.placements, int(r.params) if pd.notna(r.params) else None,
             r.status, (r.reason or "") if isinstance(r.reason, str) else ""] for r in df.itertuples()]


_HOVER = ("run %{fullData.name}<br>trial %{customdata[1]} (%{customdata[4]})<br>val acc %{y:.4f}<br>"
          "%{x:.2f} MFLOPs<br>%{customdata[3]:,} params<br>%{customdata[2]}<extra></extra>")


def pareto(runs: list[RunData]) -> go.Figure:
    """Validation accuracy vs MFLOPs: every trial, the front joined, vanilla starred, failed/pruned apart."""
    fig = go.Figure()
    single = len(runs) == 1
    for i, run in enumerate(runs):
        t = run.trials
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        done = t[t["status"] == "complete"]
        marker = dict(size=10, line=dict(width=0.5, color="#333"))
        if single:
            marker.update(color=_num(done["params"]), colorscale="Viridis", showscale=True,
                          colorbar=dict(title="params"))
        else:
            marker.update(color=colour)
        fig.add_trace(go.Scatter(x=_num(done["flops"]) / 1e6, y=_num(done["val_acc_final"]), mode="markers",
                                 name=f"{run.name}: trials", legendgroup=str(i), marker=marker,
                                 customdata=_custom(i, done), hovertemplate=_HOVER, meta={"kind": "complete"}))
        front = run.front
        fig.add_trace(go.Scatter(x=_num(front["flops"]) / 1e6, y=_num(front["val_acc_final"]), mode="lines+markers",
                                 name=f"{run.name}: Pareto front", legendgroup=str(i),
                                 line=dict(color=colour, width=2, shape="hv"),
                                 marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color=colour, width=2.5)),
                                 customdata=_custom(i, front), hovertemplate=_HOVER, meta={"kind": "front"}))
        vanilla = done[done.get("vanilla", pd.Series(False, index=done.index)).fillna(False).astype(bool)]
        if len(vanilla):
            fig.add_trace(go.Scatter(x=_num(vanilla["flops"]) / 1e6, y=_num(vanilla["val_acc_final"]),
                                     mode="markers+text", text=["vanilla"] * len(vanilla), textposition="bottom center",
                                     name=f"{run.name}: vanilla backbone", legendgroup=str(i),
                                     marker=dict(symbol="star", size=18, color="gold",
                                                 line=dict(color="#333", width=1)),
                                     customdata=_custom(i, vanilla), hovertemplate=_HOVER, meta={"kind": "vanilla"}))
        for status, symbol, col in (("pruned", "x", "#999"), ("failed", "x-thin-open", "#d62728")):
            sub = t[t["status"] == status]
            if not len(sub):
                continue
            # a failed trial has no accuracy: it is drawn at 0; a pruned one at its last (low-fidelity) accuracy
            y = np.nan_to_num(_num(sub["val_acc_final"]), nan=0.0)
            fig.add_trace(go.Scatter(x=_num(sub["flops"]) / 1e6, y=y, mode="markers", name=f"{run.name}: {status}",
                                     legendgroup=str(i), marker=dict(symbol=symbol, size=9, color=col,
                                                                     line=dict(width=1.5, color=col)),
                                     customdata=_custom(i, sub), hovertemplate=_HOVER, meta={"kind": status}))
    fig.update_layout(title="Validation accuracy vs MFLOPs (click a point for its detail)",
                      xaxis_title="MFLOPs (multiply-adds)", yaxis_title="validation accuracy", height=520,
                      legend=dict(orientation="h", y=-0.18), clickmode="event+select", **_LAYOUT)
    return fig


def _position_labels(trials: pd.DataFrame) -> dict[int, list[str]]:
    """Per searched position, the choice each trial made there (module/groups/op, or none)."""
    archs = [Arch.from_json(a) for a in trials["arch"]]
    positions = sorted({p.position for a in archs for p in a.placements})
    labels: dict[int, list[str]] = {k: [] for k in positions}
    for a in archs:
        at = {k: [] for k in positions}
        for p in a.placements:
            g = f"/g{p.groups}" if p.groups else ""
            at[p.position].append(f"{p.module}{g}" + {"insert": ":1", "substitute": "/sub", "inside": "/in"}[p.op])
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
    dims.append(dict(label="params (k)", values=_num(done["params"]) / 1e3))
    dims.append(dict(label="val acc", values=_num(done["val_acc_final"])))
    fig = go.Figure(go.Parcoords(line=dict(color=_num(done["val_acc_final"]), colorscale="Viridis", showscale=True,
                                           colorbar=dict(title="val acc")), dimensions=dims))
    fig.update_layout(title="Choices per layer against accuracy and FLOPs (drag along an axis to filter)",
                      height=480, **{**_LAYOUT, "margin": dict(l=80, r=80, t=90, b=40)})
    return fig


def hypervolume(runs: list[RunData]) -> go.Figure | None:
    """Optuna's hypervolume of the front after each trial, one line per run, one fixed reference point."""
    objectives = runs[0].objectives
    allt = pd.concat([r.trials for r in runs if len(r.trials)], ignore_index=True) if any(len(r.trials) for r in runs) \
        else None
    if allt is None or not (allt["status"] == "complete").any():
        return None
    ref = default_reference_point(allt[allt["status"] == "complete"], objectives)
    fig = go.Figure()
    scale = 1.0
    for o in objectives:
        if o in ("flops", "params"):
            scale *= 1e6  # plotted in accuracy x MFLOPs (x M params)
    for i, run in enumerate(runs):
        if run.objectives != objectives:
            continue
        hv = run.hypervolume(ref)
        if len(hv):
            fig.add_trace(go.Scatter(x=hv["trial"], y=hv["hypervolume"] / scale, mode="lines+markers", name=run.name,
                                     line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)], shape="hv")))
    if not fig.data:
        return None
    ref_text = ", ".join(f"{o} {v / 1e6:.2f}M" if o != "val_acc" else f"{o} {v:g}" for o, v in zip(objectives, ref,
                                                                                                     strict=True))
    unit = " x ".join({"val_acc": "accuracy", "flops": "MFLOPs", "params": "M params"}[o] for o in objectives)
    fig.update_layout(title=f"Hypervolume of the front (Optuna) — reference point: {ref_text}",
                      xaxis_title="trial number", yaxis_title=f"hypervolume ({unit})", height=380, **_LAYOUT)
    return fig
