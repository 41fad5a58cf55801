(function () {
  const COLOURS = {ulsam: "#1f77b4", ulsam_official: "#aec7e8", la: "#ff7f0e", lgam: "#2ca02c", csm: "#9467bd",
                   bam: "#8c564b", se: "#d62728", cbam: "#e377c2", eca: "#17becf", gc: "#bcbd22"};
  const colour = m => COLOURS[m] || "#7f7f7f";
  const fmt = (v, d) => v === null || v === undefined ? "-" : (typeof v === "number" ? v.toFixed(d) : String(v));

  function strip(run, t) {
    const pos = run.positions.filter(p => p.ops.length || p.kind !== "pool+classifier");
    const shapes = [], ann = [], xs = [], ys = [], texts = [], cols = [];
    pos.forEach((p, i) => {
      shapes.push({type: "rect", x0: i - 0.4, x1: i + 0.4, y0: 0, y1: 1, line: {color: "#888"}, fillcolor: "#f4f4f4"});
      ann.push({x: i, y: -0.25, text: String(p.index), showarrow: false, font: {size: 11}});
    });
    const idx = {}; pos.forEach((p, i) => idx[p.index] = i);
    let lift = 0;
    (t.arch.placements || []).slice().sort((a, b) => a.position - b.position).forEach(pl => {
      const i = idx[pl.position]; if (i === undefined) return;
      const g = pl.groups ? " g" + pl.groups : "";
      const c = colour(pl.module);
      let label, x;
      if (pl.op === "substitute") {
        shapes.push({type: "rect", x0: i - 0.4, x1: i + 0.4, y0: 0, y1: 1, line: {color: c, width: 2}, fillcolor: c,
                     opacity: 0.85});
        label = pl.position + ": " + pl.module + g + " (substitutes)"; x = i;
      } else if (pl.op === "inside") {
        shapes.push({type: "rect", x0: i - 0.25, x1: i + 0.25, y0: 0.25, y1: 0.75, line: {color: c}, fillcolor: c});
        label = pl.position + ": " + pl.module + g + " (inside)"; x = i;
      } else {
        x = i + 0.5;
        xs.push(x); ys.push(0.5); cols.push(c); texts.push(pl.position + ":1 " + pl.module + g);
        label = pl.position + ":1 " + pl.module + g + " (inserted)";
      }
      ann.push({x: x, y: 1.15 + 0.45 * (lift++ % 3), text: label, showarrow: true, ax: 0, ay: 18, arrowcolor: c,
                font: {size: 11, color: c}, bgcolor: "rgba(255,255,255,0.85)"});
    });
    const data = [{x: xs, y: ys, mode: "markers", type: "scatter", hoverinfo: "text", text: texts,
                   marker: {symbol: "diamond", size: 14, color: cols, line: {color: "#333", width: 1}}}];
    const layout = {title: {text: run.manifest.space + ": " + (t.arch.backbone || "") + " layers (left to right)",
                            font: {size: 13}}, shapes: shapes, annotations: ann, height: 270, showlegend: false,
                    margin: {l: 20, r: 20, t: 40, b: 30}, template: "plotly_white",
                    xaxis: {visible: false, range: [-0.7, pos.length - 0.3]}, yaxis: {visible: false, range: [-0.45, 2.75]}};
    Plotly.react("strip", data, layout, {displaylogo: false, responsive: true});
  }

  function curve(run, t) {
    const h = run.history[t.trial];
    const data = h ? [{x: h.epoch, y: h.val_acc, name: "val acc", mode: "lines+markers", type: "scatter"},
                      {x: h.epoch, y: h.train_loss, name: "train loss", mode: "lines+markers", type: "scatter",
                       yaxis: "y2"}] : [];
    Plotly.react("curve", data, {title: {text: "Learning curve of trial " + t.trial + (h ? "" : " (no epochs)"),
                                         font: {size: 13}}, height: 260, template: "plotly_white",
                                 margin: {l: 50, r: 50, t: 40, b: 40}, xaxis: {title: "epoch", dtick: 1},
                                 yaxis: {title: "val acc"}, yaxis2: {title: "train loss", overlaying: "y", side: "right"},
                                 legend: {orientation: "h"}}, {displaylogo: false, responsive: true});
  }

  function show(runIndex, trialNumber) {
    const run = NAS.runs[runIndex]; const t = run && run.trials[trialNumber];
    if (!t) return;
    document.getElementById("detail-trial").textContent = (NAS.runs.length > 1 ? run.name + " / " : "") +
      "trial " + t.trial;
    const rows = [["status", t.status + (t.on_front ? " (on the front)" : "")], ["placements", t.placements],
      ["val acc (final)", fmt(t.val_acc_final, 4)], ["val acc (best)", fmt(t.val_acc_best, 4)],
      ["test acc", fmt(t.test_acc, 4)], ["MFLOPs", t.flops === null ? "-" : (t.flops / 1e6).toFixed(3)],
      ["params", t.params === null ? "-" : t.params.toLocaleString()], ["epochs", fmt(t.epochs_run, 0)],
      ["seed", fmt(t.seed, 0)], ["wall s", fmt(t.wall_s, 1)], ["device", fmt(t.device)], ["reason", t.reason || ""]];
    const table = document.getElementById("detail-metrics");
    table.innerHTML = "";
    rows.forEach(([k, v]) => { const tr = table.insertRow(); tr.insertCell().textContent = k;
                               tr.insertCell().textContent = v; });
    document.getElementById("arch-json").textContent = JSON.stringify(t.arch, null, 2);
    strip(run, t); curve(run, t);
  }
  window.nasShowTrial = show;

  const pareto = document.getElementById("pareto");
  if (pareto && pareto.on) {
    pareto.on("plotly_click", ev => { const p = ev.points[0]; if (p && p.customdata) show(p.customdata[0], p.customdata[1]); });
  }
  document.getElementById("show-failed").addEventListener("change", ev => {
    if (!pareto || !pareto.data) return;
    const idx = pareto.data.map((tr, i) => tr.meta && (tr.meta.kind === "failed" || tr.meta.kind === "pruned") ? i : -1)
                           .filter(i => i >= 0);
    if (idx.length) Plotly.restyle(pareto, {visible: ev.target.checked ? true : false}, idx);
  });
  document.getElementById("copy-arch").addEventListener("click", () => {
    const text = document.getElementById("arch-json").textContent;
    if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {});
  });
  document.querySelectorAll("table.sortable").forEach(table => {
    table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
      const asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(h => h.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const body = table.tBodies[0]; const rows = Array.from(body.rows);
      const key = r => { const v = r.cells[col].dataset.sort; const n = parseFloat(v); return isNaN(n) ? v : n; };
      rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(r => body.appendChild(r));
    }));
    table.querySelectorAll("tbody tr").forEach(tr => tr.addEventListener("click",
      () => show(+tr.dataset.run, +tr.dataset.trial)));
  });
  const first = NAS.runs.findIndex(r => r.best !== null);
  if (first >= 0) show(first, NAS.runs[first].best);
  else { const r = NAS.runs.findIndex(r => Object.keys(r.trials).length);
         if (r >= 0) show(r, Object.keys(NAS.runs[r].trials)[0]); }
  if (window.NAS_WATCH) {  // served with --watch: reload when the run folders change
    let version = null;
    setInterval(() => fetch("/version").then(r => r.text()).then(v => {
      if (version !== null && v !== version) location.reload(); version = v; }).catch(() => {}),
      window.NAS_WATCH * 1000);
  }
})();
