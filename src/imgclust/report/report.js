/* imgclust report: map, galleries, neighbours. Plain JS, no network, no dependencies.
 * User text (paths, labels, captions, cluster names) only ever goes through textContent or
 * setAttribute, never through HTML parsing, so a hostile file name is shown as text. */
(function () {
  "use strict";
  var T_START = performance.now();
  var D = JSON.parse(document.getElementById("imgclust-data").textContent);
  var THUMBS = JSON.parse(document.getElementById("imgclust-thumbs").textContent);
  var N = D.n, K = D.k, TAU = Math.PI * 2;
  var PLACEHOLDER = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='8' height='8'%3E" +
    "%3Crect width='8' height='8' fill='%23ccc'/%3E%3C/svg%3E";

  // ---------------------------------------------------------------- helpers
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function basename(p) { var s = String(p).split(/[\\/]/); return s[s.length - 1] || String(p); }
  function thumbURL(i) {
    var t = THUMBS[D.thumb ? D.thumb[i] : i];
    return t ? "data:image/jpeg;base64," + t : PLACEHOLDER;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || typeof v !== "number" || !isFinite(v)) return "–";
    if (Math.abs(v) >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 1 });
    return v.toFixed(digits === undefined ? 4 : digits);
  }

  // Colours: tab10 / tab20 like the PNG plots, then evenly spaced hues.
  var TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
    "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"];
  function palette(n) {
    if (n <= 10) return TAB10.slice(0, Math.max(n, 1));
    if (n <= 20) return TAB20.slice(0, n);
    var out = [];
    for (var i = 0; i < n; i++) out.push("hsl(" + Math.round(360 * i / n) + ",70%," + (i % 2 ? 42 : 55) + "%)");
    return out;
  }
  var NOISE = "#b4b4b4";
  var clusterIds = D.clusters.map(function (c) { return c.id; });
  var clusterById = {};
  D.clusters.forEach(function (c) { clusterById[c.id] = c; });
  var realIds = clusterIds.filter(function (c) { return c !== -1; });
  var clusterPal = palette(realIds.length);
  var clusterColor = {};
  realIds.forEach(function (c, k) { clusterColor[c] = clusterPal[k]; });
  clusterColor[-1] = NOISE;
  function clusterName(c) {
    if (c === -1) return "noise";
    var nm = D.names && D.names[String(c)];
    return nm ? "cluster " + c + ": " + nm : "cluster " + c;
  }
  // The best names of a cluster with their vote shares (imgclust name), e.g. "cat 0.62 · dog 0.21".
  function nameScores(c, max) {
    var list = c && c.name_scores;
    if (!list || !list.length) return null;
    var box = el("span", { "class": "names", title: "best names (imgclust name); the score is the share of " +
      "the cluster's members voting for the name, 0..1" });
    list.slice(0, max || 3).forEach(function (it, k) {
      if (k) box.appendChild(el("span", { "class": "sep" }, " · "));
      var s = el("span", { "class": "nm" + (k === 0 ? " best" : "") });
      s.appendChild(el("span", { "class": "nm-name" }, it.name));
      s.appendChild(document.createTextNode(" "));
      s.appendChild(el("span", { "class": "nm-score" }, fmt(it.score, 2)));
      box.appendChild(s);
    });
    return box;
  }
  function chip(c) {
    var s = el("span", { "class": "chip" }, clusterName(c));
    s.style.background = clusterColor[c] || NOISE;
    return s;
  }

  // ---------------------------------------------------------------- header
  $("title").textContent = D.title || "imgclust report";
  (function summary() {
    var m = D.metrics || {}, cfg = D.config || {};
    var parts = [N + " images", (m.n_clusters !== undefined ? m.n_clusters : realIds.length) + " clusters"];
    if (D.n_total > N) parts[0] = D.n_total + " images (the map and galleries show a stratified sample of " + N +
      ", every cluster represented)";
    if (m.n_noise) parts.push(m.n_noise + " noise");
    if (D.skipped && D.skipped.length) parts.push(D.skipped.length + " skipped");
    if (D.assigned) parts.push(D.assigned.filter(Boolean).length + " assigned later");
    if (D.augmented) parts.push(D.augmented.filter(Boolean).length + " augmented views");
    if (cfg.encoder) parts.push("encoder " + cfg.encoder);
    if (cfg.method) parts.push("method " + cfg.method + (cfg.k ? " (k=" + cfg.k + ")" : ""));
    if (cfg.reduce) parts.push("reduce " + cfg.reduce + (cfg.reduce !== "none" && cfg.n_components ? "-" + cfg.n_components : ""));
    $("summary").textContent = parts.join(" · ");
  })();

  // ---------------------------------------------------------------- colour modes
  var modes = [{ key: "cluster", name: "cluster" }];
  if (D.label) modes.push({ key: "label", name: "true label" });
  if (D.confidence.some(function (v) { return v !== null; })) modes.push({ key: "confidence", name: "confidence" });
  var labelList = [], labelIndex = {};
  if (D.label) {
    var counts = {};
    D.label.forEach(function (l) { if (l !== null) counts[l] = (counts[l] || 0) + 1; });
    labelList = Object.keys(counts).sort();
    labelList.forEach(function (l, k) { labelIndex[l] = k; });
  }
  var labelPal = palette(labelList.length);
  var CONF_BINS = ["#440154", "#482878", "#3e4a89", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
  var mode = "cluster";

  // A "group" is one legend entry: its colour and member indices.
  var groups = [];
  function buildGroups() {
    var byKey = {}, order = [];
    function add(key, name, color, i) {
      var g = byKey[key];
      if (!g) { g = byKey[key] = { key: key, name: name, color: color, idx: [] }; order.push(g); }
      g.idx.push(i);
    }
    if (mode === "cluster") {
      D.clusters.forEach(function (c) {
        var g = byKey[c.id] = { key: c.id, name: clusterName(c.id), color: clusterColor[c.id], idx: [] };
        order.push(g);
      });
      for (var i = 0; i < N; i++) byKey[D.cluster[i]].idx.push(i);
    } else if (mode === "label") {
      for (var j = 0; j < N; j++) {
        var l = D.label[j];
        if (l === null) add("?", "unlabelled", NOISE, j);
        else add("l" + labelIndex[l], l, labelPal[labelIndex[l]], j);
      }
      order.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
    } else {
      for (var b = 0; b < 10; b++) {
        byKey["c" + b] = { key: "c" + b, name: (b / 10).toFixed(1) + "–" + ((b + 1) / 10).toFixed(1), color: CONF_BINS[b], idx: [] };
        order.push(byKey["c" + b]);
      }
      for (var q = 0; q < N; q++) {
        var v = D.confidence[q];
        if (v === null) add("none", "unknown", NOISE, q);
        else byKey["c" + Math.min(9, Math.max(0, Math.floor(v * 10)))].idx.push(q);
      }
    }
    // Noise and unlabelled underneath, so the clusters stay visible.
    order.sort(function (a, b) { return (b.color === NOISE) - (a.color === NOISE); });
    groups = order;
  }

  // ---------------------------------------------------------------- map
  var canvas = $("map"), ctx = canvas.getContext("2d"), wrap = $("map-wrap");
  var tip = $("tooltip"), tipImg = $("tooltip-img"), tipText = $("tooltip-text");
  var aspect = Math.min(20, Math.max(0.05, D.aspect || 1));
  var WX = new Float32Array(N), WY = new Float32Array(N);
  for (var i0 = 0; i0 < N; i0++) { WX[i0] = D.x[i0] / 10000; WY[i0] = D.y[i0] / 10000 * aspect; }
  var W = 0, H = 0, dpr = 1;
  var view = { cx: 0.5, cy: aspect / 2, s: 1 };
  var hover = -1, selected = -1, focusKey = null, drawPending = false;

  // Uniform grid over the unit square: hover hit-testing looks at a few cells, not all points.
  var G = Math.max(1, Math.ceil(Math.sqrt(N / 4)));
  var cells = new Array(G * G);
  for (var c0 = 0; c0 < cells.length; c0++) cells[c0] = [];
  function cellOf(wx, wy) {
    var gx = Math.min(G - 1, Math.max(0, Math.floor(wx * G)));
    var gy = Math.min(G - 1, Math.max(0, Math.floor(wy / aspect * G)));
    return [gx, gy];
  }
  for (var i1 = 0; i1 < N; i1++) { var cc = cellOf(WX[i1], WY[i1]); cells[cc[1] * G + cc[0]].push(i1); }

  function resize() {
    var r = canvas.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    W = Math.max(1, r.width); H = Math.max(1, r.height);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  function fit() { view.s = 0.92 * Math.min(W, H / aspect); view.cx = 0.5; view.cy = aspect / 2; }
  function sxOf(i) { return (WX[i] - view.cx) * view.s + W / 2; }
  function syOf(i) { return H / 2 - (WY[i] - view.cy) * view.s; }
  function toWorld(px, py) { return [(px - W / 2) / view.s + view.cx, view.cy - (py - H / 2) / view.s]; }
  function radius() {
    var base = N <= 300 ? 5 : N <= 3000 ? 3.5 : 2.4;
    var zoom = view.s / (0.92 * Math.min(W, H / aspect));
    return base * Math.min(3, Math.max(1, Math.sqrt(zoom)));
  }
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(function () { drawPending = false; draw(); });
  }
  function ring(i, r, color, width) {
    ctx.beginPath(); ctx.arc(sxOf(i), syOf(i), r, 0, TAU);
    ctx.lineWidth = width; ctx.strokeStyle = color; ctx.stroke();
  }
  function draw() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    var r = radius(), pad = r + 2;
    for (var g = 0; g < groups.length; g++) {
      var grp = groups[g];
      ctx.globalAlpha = focusKey === null || focusKey === grp.key ? 0.88 : 0.1;
      ctx.fillStyle = grp.color;
      ctx.beginPath();
      for (var k = 0; k < grp.idx.length; k++) {
        var i = grp.idx[k], x = sxOf(i), y = syOf(i);
        if (x < -pad || y < -pad || x > W + pad || y > H + pad) continue;
        ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, TAU);
      }
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    if (D.assigned) {
      ctx.beginPath();
      for (var a = 0; a < N; a++) if (D.assigned[a]) { ctx.moveTo(sxOf(a) + r + 1.5, syOf(a)); ctx.arc(sxOf(a), syOf(a), r + 1.5, 0, TAU); }
      ctx.lineWidth = 1.2; ctx.strokeStyle = "#222"; ctx.stroke();
    }
    if (D.augmented) {  // augmented views: a white centre, so originals stay solid
      ctx.beginPath();
      var ra = Math.max(1, r * 0.45);
      for (var g = 0; g < N; g++) if (D.augmented[g]) { ctx.moveTo(sxOf(g) + ra, syOf(g)); ctx.arc(sxOf(g), syOf(g), ra, 0, TAU); }
      ctx.fillStyle = "#fff"; ctx.fill();
    }
    if (selected >= 0) {
      for (var j = 0; j < K; j++) ring(D.nn[selected * K + j], r + 3, "#ff2d7a", 2);
      ring(selected, r + 5, "#000", 3);
    }
    if (hover >= 0) ring(hover, r + 3, "#000", 1.5);
  }

  function nearest(px, py, maxPx) {
    var w = toWorld(px, py), rw = maxPx / view.s, best = -1, bestD = maxPx * maxPx;
    var lo = cellOf(w[0] - rw, w[1] - rw), hi = cellOf(w[0] + rw, w[1] + rw);
    for (var gy = lo[1]; gy <= hi[1]; gy++) for (var gx = lo[0]; gx <= hi[0]; gx++) {
      var cell = cells[gy * G + gx];
      for (var k = 0; k < cell.length; k++) {
        var i = cell[k], dx = sxOf(i) - px, dy = syOf(i) - py, d2 = dx * dx + dy * dy;
        if (d2 <= bestD) { bestD = d2; best = i; }
      }
    }
    return best;
  }

  function showTip(i, px, py) {
    tipImg.src = thumbURL(i);
    tipText.textContent = "";
    tipText.appendChild(el("div", null, basename(D.paths[i])));
    var line = el("div");
    line.appendChild(chip(D.cluster[i]));
    tipText.appendChild(line);
    var tns = nameScores(clusterById[D.cluster[i]], 3);
    if (tns) { var tl = el("div", { "class": "tip-names" }); tl.appendChild(tns); tipText.appendChild(tl); }
    if (D.label && D.label[i] !== null) tipText.appendChild(el("div", null, "label: " + D.label[i]));
    if (D.caption && D.caption[i]) tipText.appendChild(el("div", null, String(D.caption[i]).slice(0, 160)));
    if (D.augmented && D.augmented[i]) tipText.appendChild(el("div", null, "augmented view of " + basename(D.source[i])));
    tip.setAttribute("data-i", i);
    tip.hidden = false;
    var tw = tip.offsetWidth, th = tip.offsetHeight;
    var x = px + 14, y = py + 14;
    if (x + tw > W) x = px - tw - 14;
    if (y + th > H) y = py - th - 14;
    tip.style.left = Math.max(0, x) + "px"; tip.style.top = Math.max(0, y) + "px";
  }
  function hideTip() { tip.hidden = true; tip.removeAttribute("data-i"); }

  var drag = null;
  function localXY(e) { var r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  canvas.addEventListener("pointerdown", function (e) {
    if (e.button !== 0) return;
    var p = localXY(e);
    drag = { x: p[0], y: p[1], cx: view.cx, cy: view.cy, moved: false };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", function (e) {
    var p = localXY(e);
    if (drag) {
      var dx = p[0] - drag.x, dy = p[1] - drag.y;
      if (!drag.moved && dx * dx + dy * dy > 16) { drag.moved = true; canvas.classList.add("dragging"); hideTip(); }
      if (drag.moved) { view.cx = drag.cx - dx / view.s; view.cy = drag.cy + dy / view.s; scheduleDraw(); }
      return;
    }
    var i = nearest(p[0], p[1], Math.max(8, radius() + 4));
    if (i !== hover) { hover = i; scheduleDraw(); }
    if (i >= 0) showTip(i, p[0], p[1]); else hideTip();
  });
  canvas.addEventListener("pointerup", function (e) {
    if (!drag) return;
    var p = localXY(e), moved = drag.moved;
    drag = null; canvas.classList.remove("dragging");
    if (!moved) {
      var i = nearest(p[0], p[1], Math.max(8, radius() + 4));
      if (i >= 0) openNeighbours(i, true);
    }
  });
  canvas.addEventListener("pointerleave", function () { if (hover >= 0) { hover = -1; scheduleDraw(); } hideTip(); });
  function zoomAt(px, py, f) {
    var w = toWorld(px, py);
    view.s = Math.min(1e6, Math.max(5, view.s * f));
    view.cx = w[0] - (px - W / 2) / view.s;
    view.cy = w[1] + (py - H / 2) / view.s;
    scheduleDraw();
  }
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var p = localXY(e);
    zoomAt(p[0], p[1], Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
    hideTip();
  }, { passive: false });
  $("zoom-in").addEventListener("click", function () { zoomAt(W / 2, H / 2, 1.5); });
  $("zoom-out").addEventListener("click", function () { zoomAt(W / 2, H / 2, 1 / 1.5); });
  $("zoom-reset").addEventListener("click", function () { fit(); scheduleDraw(); });
  window.addEventListener("resize", function () {
    var old = 0.92 * Math.min(W, H / aspect), zoom = view.s / old;
    resize(); view.s = 0.92 * Math.min(W, H / aspect) * zoom; scheduleDraw();
  });

  var sel = $("color-by");
  modes.forEach(function (m) { sel.appendChild(el("option", { value: m.key }, m.name)); });
  sel.addEventListener("change", function () { mode = sel.value; focusKey = null; buildGroups(); renderLegend(); scheduleDraw(); });

  function renderLegend() {
    var ul = $("legend");
    ul.textContent = "";
    groups.forEach(function (g) {
      var li = el("li", { title: "click to highlight; click again to show all" });
      var sw = el("span", { "class": "sw" }); sw.style.background = g.color;
      li.appendChild(sw);
      li.appendChild(document.createTextNode(g.name + " (" + g.idx.length + ")"));
      if (focusKey !== null && focusKey !== g.key) li.className = "off";
      li.addEventListener("click", function () {
        focusKey = focusKey === g.key ? null : g.key;
        renderLegend(); scheduleDraw();
      });
      ul.appendChild(li);
    });
  }

  // ---------------------------------------------------------------- galleries
  var PROTOS = 8, OUTLIERS = 6, CHUNK = 60;
  function thumbButton(i) {
    var b = el("button", { type: "button", "class": "th" + (D.assigned && D.assigned[i] ? " assigned" : "") + (D.augmented && D.augmented[i] ? " augmented" : ""),
      "data-i": i, title: D.paths[i] });
    b.appendChild(el("img", { alt: "", src: thumbURL(i), decoding: "async", width: 76, height: 76 }));
    b.appendChild(el("span", { "class": "cap" }, basename(D.paths[i])));
    return b;
  }
  function protoItem(i) {
    var ex = D.explain && D.explain[String(i)];
    if (!ex) return thumbButton(i);
    var box = el("div", { "class": "proto" });
    box.appendChild(thumbButton(i));
    box.appendChild(el("img", { "class": "ovl", alt: "", src: "data:image/jpeg;base64," + ex.overlay,
      title: "Grad-CAM: regions that drive the similarity to the cluster centre" +
        (ex.similarity !== null && ex.similarity !== undefined ? " (cosine " + fmt(ex.similarity, 3) + ")" : "") }));
    return box;
  }
  function appendGrid(parent, list) {
    var grid = el("div", { "class": "grid" });
    list.forEach(function (i) { grid.appendChild(thumbButton(i)); });
    parent.appendChild(grid);
    return grid;
  }
  function renderCluster(sec) {
    if (sec.getAttribute("data-rendered")) return;
    sec.setAttribute("data-rendered", "1");
    var c = clusterById[+sec.getAttribute("data-cluster")], order = c.order;
    var body = el("div", { "class": "body" });
    var rest = order;
    if (c.id !== -1) {
      var np = Math.min(PROTOS, order.length), no = Math.min(OUTLIERS, Math.max(0, order.length - np));
      body.appendChild(el("h4", null, "Prototypes (closest to centre)" +
        (D.explain && order.slice(0, np).some(function (i) { return D.explain[String(i)]; }) ? " with Grad-CAM heatmaps" : "")));
      var pg = el("div", { "class": "grid protos" });
      order.slice(0, np).forEach(function (i) { pg.appendChild(protoItem(i)); });
      body.appendChild(pg);
      rest = order.slice(np, order.length - no);
      if (no) {
        var out = el("div", { "class": "outliers" });
        out.appendChild(el("h4", null, "Outliers (farthest from centre)"));
        appendGrid(out, order.slice(order.length - no).reverse());
        sec._outliers = out;
      }
    }
    if (rest.length) {
      body.appendChild(el("h4", null, c.id === -1 ? "Noise: images in no cluster (HDBSCAN)" : "Members (by distance to centre)"));
      var grid = appendGrid(body, rest.slice(0, CHUNK));
      var shown = Math.min(CHUNK, rest.length);
      if (shown < rest.length) {
        var more = el("button", { type: "button", "class": "more" });
        var label = function () { more.textContent = "show more (" + (rest.length - shown) + " left)"; };
        label();
        more.addEventListener("click", function () {
          rest.slice(shown, shown + 2 * CHUNK).forEach(function (i) { grid.appendChild(thumbButton(i)); });
          shown = Math.min(rest.length, shown + 2 * CHUNK);
          if (shown >= rest.length) more.remove(); else label();
        });
        body.appendChild(more);
      }
    }
    if (sec._outliers) body.appendChild(sec._outliers);
    sec.appendChild(body);
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (e) { if (e.isIntersecting) { renderCluster(e.target); observer.unobserve(e.target); } });
  }, { rootMargin: "900px 0px" }) : null;

  function buildGalleries() {
    var index = $("cluster-index"), box = $("galleries");
    D.clusters.forEach(function (c, k) {
      var a = el("a", { href: "#cluster-" + c.id });
      var sw = el("span", { "class": "sw" }); sw.style.background = clusterColor[c.id];
      a.appendChild(sw);
      a.appendChild(document.createTextNode(clusterName(c.id) + " (" + c.size + ")"));
      index.appendChild(a);

      var sec = el("section", { "class": "cluster", id: "cluster-" + c.id, "data-cluster": c.id });
      var h = el("h3");
      var sw2 = el("span", { "class": "sw" }); sw2.style.background = clusterColor[c.id];
      h.appendChild(sw2);
      // With scores the heading is "cluster 3: best 0.62 · second 0.21 · third 0.08" (best in bold).
      var ns = c.id === -1 ? null : nameScores(c, 3);
      h.appendChild(document.createTextNode(c.id === -1 ? "Noise" : ns ? "cluster " + c.id + ": " : clusterName(c.id)));
      if (ns) h.appendChild(ns);
      sec.appendChild(h);
      var st = [c.size + " images" + (c.shown !== undefined && c.shown < c.size ? " (" + c.shown + " shown)" : "")];
      if (c.cohesion !== null && c.cohesion !== undefined) st.push("cohesion " + fmt(c.cohesion, 3));
      if (c.mean_distance !== null && c.mean_distance !== undefined) st.push("mean distance to centre " + fmt(c.mean_distance, 3));
      if (c.top_label !== undefined) st.push("most common label " + c.top_label + " (" + Math.round(100 * c.purity) + "%)");
      sec.appendChild(el("div", { "class": "stats" }, st.join(" · ")));
      box.appendChild(sec);
      // The first sections are drawn now; the rest when they come near the viewport.
      if (k < 2 || !observer) renderCluster(sec); else observer.observe(sec);
    });
  }

  // ---------------------------------------------------------------- neighbours
  var panel = $("nbr"), history = [], current = -1;
  function openNeighbours(i, push) {
    if (push && current >= 0 && current !== i) history.push(current);
    current = i; selected = i;
    var q = $("nbr-query");
    q.textContent = "";
    q.setAttribute("data-i", i);
    var imgs = el("div", { "class": "grid" });
    imgs.appendChild(el("img", { alt: "", src: thumbURL(i) }));
    var ex = D.explain && D.explain[String(i)];
    if (ex) imgs.appendChild(el("img", { "class": "ovl-big", alt: "", src: "data:image/jpeg;base64," + ex.overlay,
      title: "Grad-CAM heatmap" }));
    q.appendChild(imgs);
    q.appendChild(el("div", { "class": "path" }, D.paths[i]));
    var meta = el("div");
    meta.appendChild(chip(D.cluster[i]));
    var bits = [];
    if (D.label && D.label[i] !== null) bits.push("label: " + D.label[i]);
    if (D.distance[i] !== null) bits.push("distance to centre " + fmt(D.distance[i], 3));
    if (D.confidence[i] !== null) bits.push("confidence " + fmt(D.confidence[i], 2));
    if (D.assigned && D.assigned[i]) bits.push("assigned after clustering");
    if (D.augmented && D.augmented[i]) bits.push("augmented view of " + basename(D.source[i]));
    meta.appendChild(document.createTextNode(" " + bits.join(" · ")));
    q.appendChild(meta);
    if (D.caption && D.caption[i]) q.appendChild(el("p", null, D.caption[i]));
    var acts = el("div");
    var onMap = el("button", { type: "button" }, "show on map");
    onMap.addEventListener("click", function () {
      view.cx = WX[i]; view.cy = WY[i]; scheduleDraw();
      $("map-section").scrollIntoView({ behavior: "smooth" });
    });
    var toCl = el("button", { type: "button" }, "go to cluster");
    toCl.addEventListener("click", function () {
      var s = $("cluster-" + D.cluster[i]);
      if (s) { renderCluster(s); s.scrollIntoView({ behavior: "smooth" }); }
    });
    acts.appendChild(onMap); acts.appendChild(document.createTextNode(" ")); acts.appendChild(toCl);
    q.appendChild(acts);

    var list = $("nbr-list");
    list.textContent = "";
    if (!K) list.appendChild(el("li", null, "no embeddings.npy in this run: neighbours unavailable"));
    for (var j = 0; j < K; j++) {
      var n = D.nn[i * K + j], sim = D.nn_sim[i * K + j] / 1000;
      var li = el("li", { "data-i": n, title: D.paths[n] });
      var row = el("div", { "class": "row" });
      row.appendChild(el("img", { alt: "", src: thumbURL(n) }));
      var txt = el("div", { "class": "txt" });
      txt.appendChild(el("div", null, "cosine " + sim.toFixed(3)));
      var l2 = el("div"); l2.appendChild(chip(D.cluster[n])); txt.appendChild(l2);
      txt.appendChild(el("div", { "class": "name" }, basename(D.paths[n])));
      row.appendChild(txt);
      li.appendChild(row);
      list.appendChild(li);
    }
    $("nbr-back").disabled = history.length === 0;
    panel.hidden = false;
    panel.scrollTop = 0;
    scheduleDraw();
  }
  function closeNeighbours() { panel.hidden = true; selected = -1; current = -1; history = []; scheduleDraw(); }
  $("nbr-close").addEventListener("click", closeNeighbours);
  $("nbr-back").addEventListener("click", function () { if (history.length) openNeighbours(history.pop(), false); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !panel.hidden) closeNeighbours(); });
  // One delegated handler: gallery thumbnails and neighbour rows all carry data-i.
  document.addEventListener("click", function (e) {
    var t = e.target.closest ? e.target.closest("[data-i]") : null;
    if (!t || t === tip || t.id === "nbr-query") return;
    openNeighbours(+t.getAttribute("data-i"), true);
  });

  // ---------------------------------------------------------------- scores
  var MEANING = {
    silhouette: "cohesion vs separation, -1..1, higher is better",
    calinski_harabasz: "between / within dispersion, higher is better",
    davies_bouldin: "similarity of each cluster to its closest one, lower is better",
    acc: "accuracy after the best one-to-one cluster-to-class matching",
    nmi: "normalised mutual information with the labels, 0..1",
    ari: "adjusted Rand index with the labels, ~0 for chance, 1 perfect",
    top5_neighbor_acc: "share of the 5 nearest neighbours with the same label (embedding quality)"
  };
  function renderScores() {
    var tb = document.querySelector("#scores tbody"), m = D.metrics || {};
    function row(name, value, meaning) {
      var tr = el("tr");
      tr.appendChild(el("th", null, name));
      tr.appendChild(el("td", null, value));
      tr.appendChild(el("td", { "class": "muted" }, meaning || ""));
      tb.appendChild(tr);
    }
    [["internal", m.internal_space ? " (on " + m.internal_space + ")" : ""], ["external", " (vs labels)"]].forEach(function (p) {
      var d = m[p[0]];
      if (!d) return;
      Object.keys(d).forEach(function (key) {
        if (/_std$/.test(key)) return;
        var v = fmt(d[key]), sd = d[key + "_std"];
        if (sd !== undefined && sd !== null) v += " ± " + fmt(sd);
        row(key + p[1], v, MEANING[key]);
      });
    });
    var pr = D.probe;
    if (pr) {
      var pv = fmt(pr.accuracy);
      if (pr.accuracy_std !== undefined && pr.accuracy_std !== null) pv += " ± " + fmt(pr.accuracy_std);
      row("linear probe accuracy (supervised reference)", pv, "logistic regression trained on the true labels" +
        (pr.cv ? ", " + pr.cv + "-fold cross-validated" : "") + ": what the embeddings allow with supervision, " +
        "an upper reference for acc");
      tb.lastChild.setAttribute("data-key", "probe");
    }
    if (m.seeds > 1) row("seeds", String(m.seeds), "scores are mean ± std over seeds");
    if (!tb.children.length) row("–", "no scores in metrics.json", "");

    var cf = D.confusion;
    if (!cf) return;
    var box = $("confusion-wrap");
    box.appendChild(el("h3", null, "Confusion: true class × cluster"));
    var t = el("table", { id: "confusion" }), hr = el("tr");
    hr.appendChild(el("th", null, "class \\ cluster"));
    cf.clusters.forEach(function (c) { hr.appendChild(el("th", null, c === -1 ? "noise" : String(c))); });
    t.appendChild(hr);
    var max = 1;
    cf.matrix.forEach(function (r) { r.forEach(function (v) { if (v > max) max = v; }); });
    cf.matrix.forEach(function (r, ri) {
      var tr = el("tr");
      tr.appendChild(el("th", null, cf.classes[ri]));
      r.forEach(function (v) {
        var td = el("td", null, v ? String(v) : "");
        var a = v / max;
        td.style.background = "rgba(42,111,219," + a.toFixed(3) + ")";
        if (a > 0.55) td.style.color = "#fff";
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    box.appendChild(t);
  }

  function renderNaming() {
    var nm = D.naming, p = $("naming-caption");
    if (!nm) return;
    var enc = nm.encoder || "the encoder", how;
    if (nm.method === "classifier") {
      how = "class probabilities of " + enc + "'s classifier head" +
        (nm.sample ? " on up to " + nm.sample + " members per cluster" : "") +
        (nm.images_read ? " (" + nm.images_read + " images read)" : "");
    } else if (nm.method === "text") {
      how = "zero-shot matching of the members with " + enc + "'s text tower" +
        (nm.n_templates ? " (" + nm.n_templates + " prompt templates)" : "");
    } else {
      how = "method " + (nm.method || "unknown");
    }
    var bits = ["Cluster names (imgclust name): " + how, "vocabulary " + (nm.vocab || "?") +
      (nm.vocab_size ? " (" + nm.vocab_size + " names)" : "")];
    if (nm.contrast !== undefined) bits.push("contrast λ = " + fmt(nm.contrast, 2));
    p.textContent = bits.join(", ") + "; a name's score is the share of the cluster's members voting for it (0..1).";
    if (nm.score) p.setAttribute("title", "score = " + nm.score);
    p.hidden = false;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG_NS, tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function renderTraining() {
    var tr = D.training, box = $("training");
    if (!tr || !tr.loss_history) return;
    var pts = [];
    tr.loss_history.forEach(function (v, i) { if (typeof v === "number" && isFinite(v)) pts.push([i + 1, v]); });
    if (!pts.length) return;
    box.appendChild(el("h3", null, "Training: " + tr.method + " loss per epoch"));
    var Wd = 480, Ht = 190, L = 62, R = 14, T = 10, B = 34;
    var n = tr.loss_history.length, lo = Infinity, hi = -Infinity;
    pts.forEach(function (p) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); });
    if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
    var pad = (hi - lo) * 0.06; lo -= pad; hi += pad;
    function X(e) { return L + (n > 1 ? (e - 1) / (n - 1) : 0.5) * (Wd - L - R); }
    function Y(v) { return T + (hi - v) / (hi - lo) * (Ht - T - B); }
    var g = svg("svg", { id: "training-chart", width: Wd, height: Ht, viewBox: "0 0 " + Wd + " " + Ht, role: "img",
      "aria-label": tr.method + " training loss per epoch" });
    g.appendChild(svg("rect", { x: L, y: T, width: Wd - L - R, height: Ht - T - B, fill: "#fcfcfd", stroke: "#d8d8d8" }));
    [lo + pad, (lo + hi) / 2, hi - pad].forEach(function (v) {
      g.appendChild(svg("line", { x1: L - 4, x2: Wd - R, y1: Y(v), y2: Y(v), stroke: "#ececec" }));
      g.appendChild(svg("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#666" },
        Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)));
    });
    var ticks = n > 1 ? [1, Math.round((1 + n) / 2), n] : [1];
    ticks.filter(function (t, k) { return ticks.indexOf(t) === k; }).forEach(function (t) {
      g.appendChild(svg("text", { x: X(t), y: Ht - B + 15, "text-anchor": "middle", "font-size": 11, fill: "#666" }, t));
    });
    g.appendChild(svg("text", { x: L + (Wd - L - R) / 2, y: Ht - 4, "text-anchor": "middle", "font-size": 11,
      fill: "#666" }, "epoch"));
    g.appendChild(svg("polyline", { points: pts.map(function (p) { return X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); }).join(" "),
      fill: "none", stroke: "#2a6fdb", "stroke-width": 2 }));
    if (pts.length <= 60) pts.forEach(function (p) {
      var c = svg("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.6, fill: "#2a6fdb" });
      c.appendChild(svg("title", null, "epoch " + p[0] + ": " + p[1].toPrecision(4)));
      g.appendChild(c);
    });
    box.appendChild(g);
    var cap = [n + " epoch" + (n === 1 ? "" : "s"), "final loss " + pts[pts.length - 1][1].toPrecision(4)];
    if (tr.best_head !== undefined) cap.push("best head " + tr.best_head + " (the curve shown)");
    box.appendChild(el("p", { "class": "muted" }, cap.join(" · ")));
    box.hidden = false;
  }

  // Relative file links only: no scheme (javascript:, data:, http:), no absolute or protocol-relative path.
  function safeHref(h) {
    return typeof h === "string" && h.length > 0 && !/^[a-z][a-z0-9+.\-]*:/i.test(h) && !/^[\/\\]/.test(h) ? h : null;
  }
  var INT_KEYS = { dim: 1, n_clusters: 1, n_images: 1, k: 1, n_skipped: 1 };
  function fmtCell(key, v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (INT_KEYS[key]) return String(Math.round(v));
    if (key === "calinski_harabasz" || key === "images_per_s") return fmt(v, 1);
    if (key === "embed_seconds") return fmt(v, 2);
    return fmt(v, 4);
  }
  function renderCompare() {
    var cp = D.compare;
    if (!cp) return;
    $("compare-section").hidden = false;
    $("toc-compare").hidden = false;
    var cfg = cp.config || {}, setup = [];
    if (cfg.method) setup.push("method " + cfg.method + (cfg.k !== undefined ? " (k=" + cfg.k + ")" : ""));
    if (cfg.reduce) setup.push("reduce " + cfg.reduce + (cfg.reduce !== "none" && cfg.n_components ? "-" + cfg.n_components : ""));
    if (cfg.seeds) setup.push(cfg.seeds + " seed" + (cfg.seeds === 1 ? "" : "s"));
    if (cfg.labels) setup.push("labels from " + cfg.labels);
    $("compare-caption").textContent = "The same images, reducer and clusterer for every encoder (imgclust compare" +
      (setup.length ? ": " + setup.join(", ") : "") + "). Best value per score in bold; ↑ higher is better, ↓ lower is better" +
      (typeof cp.seconds === "number" ? "; took " + fmt(cp.seconds, 1) + " s" : "") + ".";
    var cols = cp.columns || [], best = cp.best || {};
    var hr = el("tr");
    cols.forEach(function (c) {
      var arrow = c.higher_is_better === true ? " ↑" : c.higher_is_better === false ? " ↓" : "";
      hr.appendChild(el("th", { "data-key": c.key }, c.header + arrow));
    });
    hr.appendChild(el("th", null, "report"));
    document.querySelector("#compare-table thead").appendChild(hr);
    var tb = document.querySelector("#compare-table tbody");
    (cp.rows || []).forEach(function (r) {
      var tr = el("tr", { "class": r.this ? "this" : null });
      cols.forEach(function (c) {
        if (c.key === "encoder") {
          var td = el("td", { "class": "enc" });
          td.appendChild(el("span", { "class": "enc-name" }, r.encoder));
          if (r.this) td.appendChild(el("span", { "class": "badge" }, "this run"));
          tr.appendChild(td);
          return;
        }
        var v = r.values ? r.values[c.key] : null, text = fmtCell(c.key, v);
        var sd = r.std && r.std[c.key];
        if (typeof sd === "number") text += " ± " + fmtCell(c.key, sd);
        var cell = el("td", { "class": "num", "data-key": c.key });
        if (best[c.key] === r.encoder && v !== null && v !== undefined) {
          cell.className += " best";
          cell.appendChild(el("strong", null, text));
        } else {
          cell.textContent = text;
        }
        tr.appendChild(cell);
      });
      var lt = el("td", { "class": "link" }), href = safeHref(r.href);
      if (r.this) lt.appendChild(el("span", { "class": "muted" }, "this page"));
      else if (href) lt.appendChild(el("a", { href: href, title: r.run_dir || r.link_text }, r.link_text || href));
      else lt.appendChild(el("span", { "class": "muted", title: "run directory not found" }, r.run_dir || "–"));
      tr.appendChild(lt);
      tb.appendChild(tr);
    });
    var fb = $("compare-failed");
    if (cp.failed && cp.failed.length) {
      fb.appendChild(el("h3", null, "Not compared (" + cp.failed.length + ")"));
      var ul = el("ul");
      cp.failed.forEach(function (f) {
        var li = el("li");
        li.appendChild(el("code", null, f.encoder));
        li.appendChild(document.createTextNode(": " + f.error));
        ul.appendChild(li);
      });
      fb.appendChild(ul);
    }
  }

  // ---------------------------------------------------------------- curation (imgclust duplicates / outliers)
  function curationTile(i, caption, cls) {
    var b = thumbButton(i);
    if (cls) b.className += " " + cls;
    b.appendChild(el("span", { "class": "cap score" }, caption));
    return b;
  }
  function renderDuplicates(dp) {
    var box = $("duplicates"), s = dp.summary || {};
    box.appendChild(el("h3", null, "Duplicates"));
    box.appendChild(el("p", { "class": "muted" }, (s.n_groups !== undefined ? s.n_groups : dp.n_groups) + " groups (" +
      (s.n_exact_groups || 0) + " exact by content hash, " + (s.n_near_groups || 0) + " near at cosine \u2265 " +
      fmt(s.threshold, 3) + "); " + (s.n_removable || 0) + " images could be removed keeping one per group (" +
      (s.keep || "central") + ", outlined). All groups: duplicates.parquet; removal list: duplicates_remove.txt."));
    var bt = s.groups_by_threshold;
    if (bt && Object.keys(bt).length) {
      box.appendChild(el("p", { "class": "muted" }, "groups at other thresholds: " + Object.keys(bt).map(function (t) {
        return "\u2265 " + t + ": " + bt[t]; }).join(" \u00b7 ")));
    }
    if (dp.n_groups > dp.groups.length) box.appendChild(el("p", { "class": "muted" }, "showing the " + dp.groups.length + " largest groups"));
    dp.groups.forEach(function (g) {
      var sec = el("div", { "class": "dup-group", "data-group": g.group });
      sec.appendChild(el("div", { "class": "stats" }, "group " + g.group + " \u00b7 " + g.kind + " \u00b7 " + g.size + " images" +
        (g.size > g.members.length ? " (first " + g.members.length + " shown)" : "")));
      var grid = el("div", { "class": "grid" });
      g.members.forEach(function (i, j) {
        var rep = i === g.representative;
        grid.appendChild(curationTile(i, rep ? "keep" : "cos " + fmt(g.sim[j], 3), rep ? "rep" : null));
      });
      sec.appendChild(grid);
      box.appendChild(sec);
    });
  }
  function renderOutliers(op) {
    var box = $("outliers"), s = op.summary || {};
    box.appendChild(el("h3", null, "Outliers"));
    box.appendChild(el("p", { "class": "muted" }, "Ranked by " + (s.method === "knn" ? "mean cosine distance to the " :
      "local outlier factor over the ") + (s.k || "?") + " nearest neighbours; the top " + (s.n_flagged || 0) +
      " (contamination " + fmt(s.contamination, 3) + ") are flagged (red). All scores: outliers.parquet."));
    var grid = el("div", { "class": "grid" });
    op.top.forEach(function (o) {
      grid.appendChild(curationTile(o.i, "#" + o.rank + " lof " + fmt(o.lof, 2) + " d " + fmt(o.knn, 3), o.flag ? "flag" : null));
    });
    box.appendChild(grid);
  }
  function renderCuration() {
    var c = D.curation;
    if (!c || (!c.duplicates && !c.outliers)) return;
    $("curation-section").hidden = false;
    $("toc-curation").hidden = false;
    if (c.duplicates) renderDuplicates(c.duplicates);
    if (c.outliers) renderOutliers(c.outliers);
  }

  // ---------------------------------------------------------------- figures, run info
  var FIG_TITLES = { cluster_map: "Cluster map (static)", k_sweep: "Choosing k: elbow (inertia) and silhouette per k",
    examples: "Examples per cluster (closest to centre first)", confusion: "Confusion matrix (columns matched to classes)" };
  function renderFigures() {
    var box = $("figures"), names = Object.keys(D.plots || {});
    var pref = ["k_sweep", "confusion", "cluster_map", "examples"];
    names.sort(function (a, b) {
      var ia = pref.indexOf(a), ib = pref.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : 1);
    });
    names.forEach(function (nm) {
      var f = el("figure", { id: "fig-" + nm });
      f.appendChild(el("img", { alt: nm, src: "data:image/png;base64," + D.plots[nm] }));
      f.appendChild(el("figcaption", null, FIG_TITLES[nm] || nm));
      box.appendChild(f);
    });
    if (!names.length) box.appendChild(el("p", { "class": "muted" }, "no plots in this run (run without --no-report to draw them)"));
    var an = $("animations");
    (D.animations || []).forEach(function (a) {
      an.appendChild(el("h3", null, (a.method || "clustering") + ": iterations and initialisations"));
      if (a.gif) {
        var f = el("figure");
        f.appendChild(el("img", { alt: "", src: "data:image/gif;base64," + a.gif }));
        f.appendChild(el("figcaption", null, (a.n_iter || "?") + " iterations on the 2-D map" + (a.mp4_file ? "; video: animate/" + a.mp4_file : "")));
        an.appendChild(f);
      } else if (a.gif_file) {
        an.appendChild(el("p", { "class": "muted" }, "animation: animate/" + a.gif_file + " (too large to inline)"));
      }
      if (a.figure) {
        var g = el("figure");
        g.appendChild(el("img", { alt: "", src: "data:image/png;base64," + a.figure }));
        g.appendChild(el("figcaption", null, "Initialisations compared by final inertia and score"));
        an.appendChild(g);
      }
    });
  }
  function renderExperiments() {
    var au = D.augment, rb = D.robustness;
    if (!au && !rb) return;
    $("experiments-section").hidden = false;
    $("toc-experiments").hidden = false;
    if (au) {
      var box = $("augment-info");
      box.appendChild(el("h3", null, "Augmented views"));
      box.appendChild(el("p", null, au.n_views + " augmented view(s) per image (random resized crop, flip, colour jitter; seed " +
        au.seed + "), used as " + au.used_as + ". Augmented points are drawn with a white centre on the map and a dashed frame in the galleries."));
      var ext = au.external_originals;
      if (ext) box.appendChild(el("p", null, "scores on the " + au.n_original + " original images: " +
        Object.keys(ext).filter(function (k) { return !/_std$/.test(k); }).map(function (k) { return k + " " + fmt(ext[k]); }).join(", ")));
    }
    if (rb) {
      var rbox = $("robustness"), cfg = rb.config || {};
      rbox.appendChild(el("h3", null, "Robustness to corruptions"));
      rbox.appendChild(el("p", { "class": "muted" }, "Each image re-embedded under the corruption (severity 0 = clean) and reclustered with this run's settings (" +
        (cfg.method || "") + ", k=" + cfg.k + "); see plots/robustness.png and robustness.csv."));
      var t = el("table"), head = el("tr");
      ["corruption", "severity", "parameter"].concat(rb.keys.map(function (k) { return rb.labels[k]; })).forEach(function (h) { head.appendChild(el("th", null, h)); });
      var th = el("thead"); th.appendChild(head); t.appendChild(th);
      var tb = el("tbody");
      rb.rows.forEach(function (r) {
        var tr = el("tr");
        [r.corruption, String(r.severity), r.param === null ? "" : fmt(r.param)].concat(rb.keys.map(function (k) { return r[k] === null ? "-" : fmt(r[k]); }))
          .forEach(function (v) { tr.appendChild(el("td", null, v)); });
        tb.appendChild(tr);
      });
      t.appendChild(tb);
      var wrap = el("div", { "class": "table-scroll" }); wrap.appendChild(t); rbox.appendChild(wrap);
    }
  }
  function renderRun() {
    var sk = $("skipped");
    if (D.skipped && D.skipped.length) {
      sk.appendChild(el("h3", null, "Skipped files (" + D.skipped.length + ")"));
      var ul = el("ul");
      D.skipped.forEach(function (s) { ul.appendChild(el("li", null, s.path + ": " + s.reason)); });
      sk.appendChild(ul);
    }
    $("config").textContent = JSON.stringify(D.config, null, 2);
    $("timings").textContent = "timings (s): " + JSON.stringify(D.timings, null, 2) +
      (D.assign_log ? "\nassign: " + JSON.stringify(D.assign_log, null, 2) : "");
    $("versions").textContent = "versions: " + JSON.stringify(D.versions, null, 2);
  }

  // ---------------------------------------------------------------- start
  resize(); fit(); buildGroups(); renderLegend(); draw();
  buildGalleries(); renderScores(); renderNaming(); renderTraining(); renderCompare(); renderCuration(); renderExperiments();
  renderFigures(); renderRun();

  // A small API for tests and benchmarks (also handy from the devtools console).
  var api = {
    ready: false, n: N, k: K,
    pointClient: function (i) {
      var r = canvas.getBoundingClientRect();
      return { x: r.left + sxOf(i), y: r.top + syOf(i) };
    },
    neighbours: function (i) { return D.nn.slice(i * K, i * K + K); },
    thumbURL: thumbURL,
    openNeighbours: function (i) { openNeighbours(i, true); }
  };
  window.__imgclust = api;
  // Interactive = the first frame with the map and the visible galleries has been produced.
  requestAnimationFrame(function () {
    setTimeout(function () {
      api.ready = true;
      api.tti = performance.now();
      api.script_ms = api.tti - T_START;
      document.body.setAttribute("data-ready", "1");
    }, 0);
  });
})();
