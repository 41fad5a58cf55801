(function () {
  const COLOURS = {ulsam: "#1f77b4", ulsam_official: "#aec7e8", la: "#ff7f0e", lgam: "#2ca02c", csm: "#9467bd",
                   csm_spatial_first: "#c5b0d5", cam: "#98df8a", sam: "#ffbb78", sge: "#17becf", nonlocal: "#7f7f7f",
                   bam: "#8c564b", se: "#d62728", cbam: "#e377c2", eca: "#bcbd22", gc: "#393b79"};
  const colour = m => COLOURS[m] || "#555";
  const fmt = (v, d) => v === null || v === undefined ? "-" : (typeof v === "number" ? v.toFixed(d) : String(v));
  const esc = s => String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                         "'": "&#39;"})[c]);
  // how each op is drawn on the strip (the legend below it says the same in words)
  const OP_MARK = {substitute: "filled box: substitutes the layer", inside: "inner square: inside its residual branch",
                   parallel: "bar below: beside the block (parallel)", insert: "diamond between layers: inserted after"};

  function stripShapes(pos, marks, idx) {
    const shapes = pos.map((p, i) => ({type: "rect", x0: i - 0.4, x1: i + 0.4, y0: 0, y1: 1,
                                      line: {color: "#999"}, fillcolor: "#f4f4f4"}));
    const pts = {x: [], y: [], text: [], colour: [], symbol: []};
    marks.forEach(m => {
      const i = idx[m.position]; if (i === undefined) return;
      const c = colour(m.module);
      if (m.op === "substitute") shapes.push({type: "rect", x0: i - 0.4, x1: i + 0.4, y0: 0, y1: 1, fillcolor: c,
                                              line: {color: c}, opacity: 0.85});
      if (m.op === "inside") shapes.push({type: "rect", x0: i - 0.22, x1: i + 0.22, y0: 0.28, y1: 0.72,
                                          fillcolor: c, line: {color: "#333", width: 1}});
      if (m.op === "parallel") shapes.push({type: "rect", x0: i - 0.4, x1: i + 0.4, y0: -0.22, y1: -0.08,
                                            fillcolor: c, line: {color: c}});
      // every mark also gets an invisible-or-diamond point, so that hovering it names the placement
      const x = m.op === "insert" ? i + 0.5 : i, y = m.op === "parallel" ? -0.15 : 0.5;
      pts.x.push(x); pts.y.push(y); pts.text.push(m.label); pts.colour.push(c);
      pts.symbol.push(m.op === "insert" ? "diamond" : "square");
    });
    return {shapes, pts};
  }

  function strip(run, t) {
    const pos = run.positions.filter(p => p.ops.length);
    const idx = {}; pos.forEach((p, i) => idx[p.index] = i);
    const marks = t.marks || [];
    const {shapes, pts} = stripShapes(pos, marks, idx);
    const every = Math.max(1, Math.ceil(pos.length / 24));  // at most ~24 layer numbers: they never overlap
    const placed = new Set(marks.map(m => m.position));
    const ticks = pos.map((p, i) => (i % every === 0 || placed.has(p.index)) ? i : null).filter(i => i !== null);
    const data = [{x: pts.x, y: pts.y, mode: "markers", type: "scatter", hoverinfo: "text", text: pts.text,
                   marker: {symbol: pts.symbol, size: pts.symbol.map(s => s === "diamond" ? 13 : 18),
                            color: pts.colour.map((c, k) => pts.symbol[k] === "diamond" ? c : "rgba(0,0,0,0)"),
                            line: {color: pts.symbol.map(s => s === "diamond" ? "#333" : "rgba(0,0,0,0)"), width: 1}}}];
    const layout = {title: {text: (t.arch.backbone || "") + ": numbered layers, first to last (hover a mark)",
                            font: {size: 13}}, shapes, height: 170, showlegend: false,
                    margin: {l: 20, r: 20, t: 36, b: 30}, template: "plotly_white",
                    xaxis: {range: [-0.7, pos.length - 0.3], tickvals: ticks, ticktext: ticks.map(i => pos[i].index),
                            showgrid: false, zeroline: false, fixedrange: true},
                    yaxis: {visible: false, range: [-0.35, 1.15], fixedrange: true}};
    Plotly.react("strip", data, layout, {displaylogo: false, responsive: true});
    legend(marks);
  }

  function legend(marks) {
    const el = document.getElementById("strip-legend");
    const ops = [...new Set(marks.map(m => m.op))], modules = [...new Set(marks.map(m => m.module))];
    if (!marks.length) { el.textContent = "The vanilla backbone: no module placed."; return; }
    el.innerHTML = ops.map(op => `<span>${esc(OP_MARK[op] || op)}</span>`).join("") +
      modules.map(m => `<span><i class="swatch" style="background:${colour(m)}"></i>${esc(m)}</span>`).join("");
  }

  function curve(run, t) {
    const h = run.history[t.trial];
    const data = h ? [{x: h.epoch, y: h.val_acc, name: "validation accuracy", mode: "lines+markers", type: "scatter"},
                      {x: h.epoch, y: h.train_loss, name: "training loss", mode: "lines+markers", type: "scatter",
                       yaxis: "y2"}] : [];
    const epochs = h ? h.epoch.length : 0;
    Plotly.react("curve", data, {
      title: {text: "Learning curve of trial " + t.trial + (h ? "" : " (no epoch finished)"), font: {size: 13}},
      height: 260, template: "plotly_white", margin: {l: 60, r: 60, t: 40, b: 45},
      xaxis: {title: {text: "epoch"}, dtick: epochs <= 20 ? 1 : null, range: epochs === 1 ? [0.5, 1.5] : null},
      yaxis: {title: {text: "validation accuracy"}, tickformat: ".2f", range: [0, 1]},
      yaxis2: {title: {text: "training loss"}, overlaying: "y", side: "right", tickformat: ".3f"},
      legend: {orientation: "h", y: -0.3}}, {displaylogo: false, responsive: true});
  }

  function cell(uri, caption) {
    return `<td><img src="${uri}" alt="${esc(caption)}"><div>${esc(caption)}</div></td>`;
  }

  function heatmaps(run, t) {
    const el = document.getElementById("heatmaps"), hm = run.heatmaps;
    const mine = hm && hm.trials[t.trial], vanilla = hm && hm.vanilla !== null ? hm.trials[hm.vanilla] : null;
    if (!hm) { el.innerHTML = ""; return; }
    if (!mine) {
      el.innerHTML = `<h3>Where it looks</h3><p class="note">Heatmaps are made for the vanilla backbone and the ` +
        `front trials: pick one of those, or run <code>nas-attn heatmaps RUN_DIR --trials ${t.trial}</code>.</p>`;
      return;
    }
    const cols = [];  // [heading, trial's heatmaps, layer index]
    if (vanilla && hm.vanilla !== t.trial) cols.push([`vanilla (trial ${hm.vanilla}): features`, vanilla, 0]);
    mine.layers.forEach((layer, l) => cols.push([`trial ${t.trial}: ${layer === "features" ? "features" : layer}`,
                                                 mine, l]));
    const head = "<tr><th>image (true class)</th>" + cols.map(c => `<th>${esc(c[0])}</th>`).join("") + "</tr>";
    const rows = hm.images.map((uri, i) => "<tr>" + cell(uri, hm.labels[i]) + cols.map(([, h, l]) =>
      cell(h.pngs[l][i], `predicted ${h.predicted[i]} (${h.confidence[i].toFixed(2)})`)).join("") + "</tr>");
    el.innerHTML = "<h3>Where it looks: Grad-CAM for the predicted class, at the last feature layer and at each " +
      "placed module's output</h3><div class=\"tablewrap\"><table class=\"heatmaps\">" + head + rows.join("") +
      "</table></div>";
  }

  function show(runIndex, trialNumber) {
    const run = NAS.runs[runIndex]; const t = run && run.trials[trialNumber];
    if (!t) return;
    document.getElementById("detail-trial").textContent = (NAS.runs.length > 1 ? run.name + " / " : "") +
      "trial " + t.trial;
    const rows = [["status", t.status + (t.on_front ? " (on the front)" : "")], ["placements", t.placements],
      ["val acc (final)", fmt(t.val_acc_final, 4)], ["val acc (best)", fmt(t.val_acc_best, 4)],
      ["val top-5 (final)", fmt(t.val_top5_final, 4)], ["test acc", fmt(t.test_acc, 4)],
      ["test top-5", fmt(t.test_top5, 4)], ["MFLOPs", t.flops === null ? "-" : (t.flops / 1e6).toFixed(2)],
      ["params", t.params === null ? "-" : t.params.toLocaleString("en")], ["epochs", fmt(t.epochs_run, 0)],
      ["seed", fmt(t.seed, 0)], ["wall s", fmt(t.wall_s, 1)], ["device", fmt(t.device)], ["reason", t.reason || ""]];
    if (t.latency_ms !== null) rows.splice(8, 0, ["latency ms", fmt(t.latency_ms, 3)]);
    if (t.evaluation === "inherit" || t.evaluation === "oneshot") {
      rows.splice(1, 0, ["evaluation", t.evaluation + " (a prediction: never on the front)"]);
    } else if (t.retrain_of !== null && t.retrain_of !== undefined) {
      rows.splice(1, 0, ["evaluation", "from scratch, retraining trial " + t.retrain_of]);
    }
    const table = document.getElementById("detail-metrics");
    table.innerHTML = "";
    rows.forEach(([k, v]) => { const tr = table.insertRow(); tr.insertCell().textContent = k;
                               tr.insertCell().textContent = v; });
    document.getElementById("arch-json").textContent = JSON.stringify(t.arch, null, 2);
    strip(run, t); curve(run, t); heatmaps(run, t);
  }
  window.nasShowTrial = show;

  const pareto = document.getElementById("pareto");
  [pareto, document.getElementById("predictions")].forEach(graph => {
    if (graph && graph.on) {
      graph.on("plotly_click", ev => { const p = ev.points[0]; if (p && p.customdata) show(p.customdata[0], p.customdata[1]); });
    }
  });
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
