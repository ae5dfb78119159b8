/* OPCoD Studio dashboard: uPlot charts, the heatmap readout, live chart refresh over SSE.
   Small on purpose: markup comes from the server (htmx). Never uses innerHTML with data. */
(function () {
  "use strict";

  var PALETTE = ["#1f6feb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c7cfa"];
  var charts = {};

  function chartSize(el) {
    var w = Math.max(260, Math.floor(el.getBoundingClientRect().width || 400));
    return { width: w, height: 200 };
  }

  function makeChart(el, x, block, colors) {
    var labels = block.labels || [];
    var series = [{ label: "step" }];
    labels.forEach(function (label, i) {
      series.push({ label: label, stroke: (colors || PALETTE)[i % PALETTE.length], width: 1.5,
                    spanGaps: true, points: { show: x.length < 60 } });
    });
    var data = [x].concat(block.series || []);
    var size = chartSize(el);
    var opts = { width: size.width, height: size.height, series: series,
                 scales: { x: { time: false } }, legend: { live: true },
                 axes: [{ label: "global step" }, {}] };
    el.textContent = "";
    if (!x.length) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No steps yet.";
      el.appendChild(p);
      return null;
    }
    return new uPlot(opts, data, el);
  }

  function renderCharts(data, compare) {
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var key = el.getAttribute("data-chart");
      var block = compare ? (data.curves || {})[key] : data[key];
      if (!block) return;
      var x = data.x || [];
      var existing = charts[key];
      if (existing && x.length && existing.series.length === (block.series || []).length + 1) {
        existing.setData([x].concat(block.series));
        return;
      }
      if (existing) { existing.destroy(); delete charts[key]; }
      var c = makeChart(el, x, block, compare ? data.colors : null);
      if (c) charts[key] = c;
    });
  }

  var refreshTimer = null, inFlight = false;
  function refreshCharts() {
    var island = document.getElementById("chart-data");
    if (!island || typeof uPlot === "undefined") return;
    if (refreshTimer) return;  // coalesce bursts of events into one fetch
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      if (inFlight) { refreshCharts(); return; }
      inFlight = true;
      fetch(island.getAttribute("data-src"), { headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d) { renderCharts(d, false); document.body.setAttribute("data-charts-steps", String((d.x || []).length)); } })
        .catch(function () {})
        .finally(function () { inFlight = false; });
    }, 300);
  }

  function initCharts() {
    if (typeof uPlot === "undefined") return;
    var cmp = document.getElementById("compare-data");
    if (cmp) { renderCharts(JSON.parse(cmp.textContent), true); return; }
    if (document.getElementById("chart-data")) refreshCharts();
  }

  /* SSE: htmx-ext-sse owns the EventSource; we listen on it for chart-relevant events. */
  document.addEventListener("htmx:sseOpen", function (evt) {
    var src = evt.detail && evt.detail.source;
    if (!src || src.__opcodCharts) return;
    src.__opcodCharts = true;
    ["step", "eval", "gate", "end"].forEach(function (type) {
      src.addEventListener(type, refreshCharts);
    });
  });

  /* Polling sections marked data-pause-while-editing skip a refresh while a control inside has focus,
     so a refresh never throws away what someone is typing. */
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-pause-while-editing")) return;
    var active = document.activeElement;
    if (active && elt.contains(active) && /^(TEXTAREA|INPUT|SELECT|BUTTON)$/.test(active.tagName)) {
      evt.preventDefault();
    }
  });

  /* Heatmap: hover or focus a token -> the exact value in the readout (textContent only). Arrow keys move
     focus between tokens (one tab stop per heatmap: roving tabindex). */
  function readoutFor(tok) {
    var fig = tok.closest(".heatmap");
    return fig ? fig.querySelector(".heat-readout") : null;
  }
  function show(tok) {
    var out = readoutFor(tok);
    if (!out) return;
    var fig = tok.closest(".heatmap");
    var what = fig && fig.classList.contains("heat-effect") ? "effect" : "divergence";
    out.textContent = "token " + tok.getAttribute("data-i") + " \u201c" + tok.textContent + "\u201d: " +
      what + " " + tok.getAttribute("data-v");
    fig.querySelectorAll(".tok.active").forEach(function (t) { t.classList.remove("active"); });
    tok.classList.add("active");
  }
  document.addEventListener("mouseover", function (e) {
    var tok = e.target.closest && e.target.closest(".tok");
    if (tok) show(tok);
  });
  document.addEventListener("focusin", function (e) {
    var tok = e.target.closest && e.target.closest(".tok");
    if (tok) show(tok);
  });
  document.addEventListener("keydown", function (e) {
    var tok = e.target.closest && e.target.closest(".tok");
    if (!tok) return;
    var toks = Array.prototype.slice.call(tok.parentNode.querySelectorAll(".tok"));
    var i = toks.indexOf(tok), j = i;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") j = Math.min(toks.length - 1, i + 1);
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") j = Math.max(0, i - 1);
    else if (e.key === "Home") j = 0;
    else if (e.key === "End") j = toks.length - 1;
    else return;
    e.preventDefault();
    tok.setAttribute("tabindex", "-1");
    toks[j].setAttribute("tabindex", "0");
    toks[j].focus();
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(charts).forEach(function (k) {
        var el = document.querySelector('.chart[data-chart="' + k + '"]');
        if (el) charts[k].setSize(chartSize(el));
      });
    }, 150);
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", initCharts);
  else initCharts();
})();
