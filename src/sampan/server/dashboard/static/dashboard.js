// Sampan's dashboard: charts (uPlot) filled from series.json, a container's live log (server-sent
// events), and the CSRF token on every htmx request. No HTML is ever built from data here: text is
// added with textContent, so a log line such as "<script>" stays text.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", (e) => {
    if (csrf) e.detail.headers["X-CSRF-Token"] = csrf.content;
  });

  // -- charts -------------------------------------------------------------------------------------
  const REFRESH_MS = 2000;
  const KINDS = {
    traffic: [["rps", "req/s", "#2563eb"], ["errors_4xx", "4xx", "#d97706"], ["errors_5xx", "5xx", "#dc2626"]],
    latency: [["p50_ms", "p50", "#16a34a"], ["p95_ms", "p95", "#d97706"], ["p99_ms", "p99", "#dc2626"]],
    containers: [["busy", "busy", "#2563eb"], ["idle", "idle", "#94a3b8"], ["starting", "starting", "#d97706"],
                 ["cold_starts", "cold starts", "#7c3aed"]],
    waits: [["queue_ms", "queue wait", "#0891b2"], ["cold_ms", "cold start", "#7c3aed"]],
  };

  function makeChart(el, data) {
    const kind = KINDS[el.dataset.chart];
    const opts = {
      title: el.dataset.title,
      width: Math.max(280, el.clientWidth || 420),
      height: 180,
      series: [{}].concat(kind.map(([, label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: false }))),
      axes: [{}, { size: 50 }],
      scales: { x: { time: true } },
    };
    return new uPlot(opts, columns(el, data), el);
  }

  function columns(el, data) {
    return [data.t].concat(KINDS[el.dataset.chart].map(([key]) => data[key]));
  }

  function watchCharts(group) {
    const url = group.dataset.seriesUrl;
    const charts = new Map();
    async function refresh() {
      try {
        const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (resp.ok) {
          const data = await resp.json();
          group.querySelectorAll(".chart").forEach((el) => {
            const chart = charts.get(el);
            if (chart) chart.setData(columns(el, data));
            else charts.set(el, makeChart(el, data));
          });
          const total = data.rps.reduce((a, b) => a + (b || 0), 0);
          group.dataset.total = String(Math.round(total * 5));  // requests in the window (tests read it)
          group.dataset.updated = String(Date.now());
        }
      } finally {
        setTimeout(refresh, REFRESH_MS);
      }
    }
    refresh();
  }

  // -- a container's live log ----------------------------------------------------------------------
  const MAX_LINES = 5000;

  function watchLog(pre) {
    const source = new EventSource(pre.dataset.streamUrl);
    source.onmessage = (e) => {
      const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      const line = document.createElement("div");
      line.textContent = JSON.parse(e.data);
      pre.appendChild(line);
      while (pre.childNodes.length > MAX_LINES) pre.removeChild(pre.firstChild);
      if (follow) pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("end", (e) => {
      const line = document.createElement("div");
      line.className = "muted";
      line.textContent = "— " + JSON.parse(e.data) + " —";
      pre.appendChild(line);
      source.close();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".charts[data-series-url]").forEach(watchCharts);
    document.querySelectorAll("pre[data-stream-url]").forEach(watchLog);
    document.querySelectorAll("form button.danger").forEach((button) => {
      button.form.addEventListener("submit", (e) => {
        if (!window.confirm(button.textContent.trim() + "?")) e.preventDefault();
      });
    });
  });
})();
