/* The collection map: a canvas of every painting, drawn into one ImageData per frame (smooth at
   100,000 points), with zoom, pan, hover, click, box or lasso selection, colours with a legend and a filter.
   The points are fetched once from /api/map; a new layout or colour fetches only that part. */
(function () {
  "use strict";
  var script = document.getElementById("map-script");
  var canvas = document.getElementById("map-canvas");
  if (!script || !canvas) return;
  var SCALE = 99999;
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#17becf", "#bcbd22", "#aec7e8"];
  var GREY = [110, 110, 118], DIM = [58, 60, 66];
  var stage = document.getElementById("map-stage");
  var tip = document.getElementById("map-tip"), tipImg = document.getElementById("map-tip-img");
  var tipTitle = document.getElementById("map-tip-title"), tipDate = document.getElementById("map-tip-date");
  var box = document.getElementById("map-box"), statusEl = document.getElementById("map-status");
  var layoutSel = document.getElementById("map-layout"), colorSel = document.getElementById("map-color");
  var filterBox = document.getElementById("map-filter"), legendEl = document.getElementById("map-legend");
  var selCard = document.getElementById("map-selection"), selCount = document.getElementById("map-sel-count");
  var toolSel = document.getElementById("map-tool"), lassoEl = document.getElementById("map-lasso");
  var lassoLine = document.getElementById("map-lasso-line");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var ctx = canvas.getContext("2d");

  var st = { n: 0, ids: [], titles: [], dates: [], x: null, y: null, codes: null, color: null, flagged: null,
    off: {}, match: null, selected: null, nSelected: 0, grid: null, xAxis: null,
    view: { cx: SCALE / 2, cy: SCALE / 2, k: 1 }, W: 0, H: 0, dpr: 1, rgb: [], hover: -1, lastLasso: null };
  window.artMap = { ready: false };

  function hexRgb(h) { return [parseInt(h.substr(1, 2), 16), parseInt(h.substr(3, 2), 16), parseInt(h.substr(5, 2), 16)]; }
  var RGB = PALETTE.map(hexRgb);

  function api(params) {
    var q = Object.keys(params).map(function (k) { return k + "=" + encodeURIComponent(params[k]); }).join("&");
    return fetch("/api/map?" + q, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.detail || r.status); return j; }); });
  }

  function setXY(d) {
    st.x = Int32Array.from(d.x); st.y = Int32Array.from(d.y); st.xAxis = d.x_axis;
    buildGrid(); fit();
  }
  function setColour(c) {
    st.color = c; st.off = {};
    st.codes = c ? Int16Array.from(c.codes) : new Int16Array(st.n).fill(-1);
    renderLegend(); applyFilter();
  }

  // ------------------------------------------------------------------ view
  function resize() {
    var r = stage.getBoundingClientRect();
    st.dpr = window.devicePixelRatio || 1;
    st.W = Math.max(1, Math.round(r.width * st.dpr)); st.H = Math.max(1, Math.round(r.height * st.dpr));
    canvas.width = st.W; canvas.height = st.H;
    draw();
  }
  function fit() { st.view = { cx: SCALE / 2, cy: SCALE / 2, k: 0.92 * Math.min(st.W, st.H) / SCALE }; draw(); }
  function sx(i) { return (st.x[i] - st.view.cx) * st.view.k + st.W / 2; }
  function sy(i) { return (st.y[i] - st.view.cy) * st.view.k + st.H / 2; }
  function toWorld(px, py) { return [(px - st.W / 2) / st.view.k + st.view.cx, (py - st.H / 2) / st.view.k + st.view.cy]; }

  // ------------------------------------------------------------------ drawing
  var pending = false;
  function draw() { if (!pending) { pending = true; requestAnimationFrame(paint); } }
  function paint() {
    pending = false;
    if (!st.x) return;
    var W = st.W, H = st.H, img = ctx.createImageData(W, H), px = img.data, n = st.n;
    for (var p = 0; p < px.length; p += 4) { px[p] = 21; px[p + 1] = 23; px[p + 2] = 28; px[p + 3] = 255; }
    // dot radius: larger for smaller collections and when zoomed in
    var r = n <= 1000 ? 4 : n <= 10000 ? 3 : n <= 50000 ? 2 : 1;
    var zoom = st.view.k * SCALE / (0.92 * Math.min(W, H));
    if (zoom > 4) r += 1;
    if (zoom > 16) r += 1;
    r = Math.max(1, Math.round(r * st.dpr));
    var r2 = (r - 0.5) * (r - 0.5);
    for (var pass = 0; pass < 2; pass++) {  // dimmed points first, the shown ones on top
      for (var i = 0; i < n; i++) {
        var shown = visible(i);
        if ((pass === 0) === shown) continue;
        var x = Math.round(sx(i)), y = Math.round(sy(i));
        if (x < -r || y < -r || x >= W + r || y >= H + r) continue;
        var c = !shown ? DIM : st.selected && st.selected[i] ? [255, 255, 255] : colourOf(i);
        for (var dy = -r + 1; dy < r; dy++) {
          var yy = y + dy; if (yy < 0 || yy >= H) continue;
          for (var dx = -r + 1; dx < r; dx++) {
            var xx = x + dx; if (xx < 0 || xx >= W || (r > 2 && dx * dx + dy * dy > r2)) continue;
            var o = (yy * W + xx) * 4; px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2];
          }
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    // flagged paintings: a ring
    ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = 1.2 * st.dpr;
    var fl = st.flagged || [];
    if (fl.length <= 20000) {
      ctx.beginPath();
      for (var f = 0; f < fl.length; f++) {
        var j = fl[f]; if (!visible(j)) continue;
        var fx = sx(j), fy = sy(j);
        if (fx < -8 || fy < -8 || fx > W + 8 || fy > H + 8) continue;
        ctx.moveTo(fx + r + 2.5 * st.dpr, fy); ctx.arc(fx, fy, r + 2.5 * st.dpr, 0, 2 * Math.PI);
      }
      ctx.stroke();
    }
    if (st.hover >= 0) {
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 2 * st.dpr; ctx.beginPath();
      ctx.arc(sx(st.hover), sy(st.hover), r + 5 * st.dpr, 0, 2 * Math.PI); ctx.stroke();
    }
    drawAxis();
  }
  function drawAxis() {
    var ax = st.xAxis; if (!ax || !ax.ticks) return;
    ctx.fillStyle = "#c9ccd3"; ctx.font = (11 * st.dpr) + "px sans-serif"; ctx.textAlign = "center";
    ax.ticks.forEach(function (t) {
      var x = (t[0] - st.view.cx) * st.view.k + st.W / 2;
      if (x < 0 || x > st.W) return;
      ctx.fillText(String(t[1]).replace(/_/g, " "), x, st.H - 6 * st.dpr);
    });
    ctx.textAlign = "left"; ctx.fillText(ax.label + " →", 8 * st.dpr, st.H - 20 * st.dpr);
  }
  function colourOf(i) { var c = st.codes[i]; return c >= 0 && c < RGB.length ? RGB[c] : GREY; }
  function visible(i) {
    if (st.off[st.codes[i]]) return false;
    return !st.match || st.match[i] === 1;
  }

  // ------------------------------------------------------------------ legend and filter
  function renderLegend() {
    legendEl.innerHTML = "";
    document.getElementById("map-legend-title").textContent = st.color ? st.color.field.replace(/_/g, " ") : "Legend";
    if (!st.color) return;
    var entries = st.color.values.map(function (v, i) { return [i, v, st.color.counts[i], PALETTE[i]]; });
    if (st.color.other) entries.push([-1, "other values", st.color.other, "#6e6e76"]);
    if (st.color.missing) entries.push([-2, "no value", st.color.missing, "#6e6e76"]);
    entries.forEach(function (e) {
      var li = document.createElement("li");
      li.dataset.code = e[0];
      li.innerHTML = '<span class="sw"></span><span class="v"></span><span class="n"></span>';
      li.querySelector(".sw").style.background = e[3];
      li.querySelector(".v").textContent = String(e[1]).replace(/_/g, " ");
      li.querySelector(".n").textContent = e[2].toLocaleString();
      li.title = "click to hide or show";
      li.addEventListener("click", function () {
        st.off[e[0]] = !st.off[e[0]]; li.classList.toggle("off", !!st.off[e[0]]); draw();
      });
      legendEl.appendChild(li);
    });
  }
  function applyFilter() {
    var q = (filterBox.value || "").trim().toLowerCase();
    if (!q) { st.match = null; draw(); return; }
    var m = new Uint8Array(st.n), vals = st.color ? st.color.values.map(function (v) { return String(v).toLowerCase(); }) : [];
    for (var i = 0; i < st.n; i++) {
      var c = st.codes[i];
      if ((st.titles[i] || "").toLowerCase().indexOf(q) >= 0 || st.ids[i].toLowerCase().indexOf(q) >= 0 ||
          (c >= 0 && vals[c].indexOf(q) >= 0) || (st.dates[i] || "").indexOf(q) >= 0) m[i] = 1;
    }
    st.match = m; draw();
  }

  // ------------------------------------------------------------------ hit testing
  var G = 128;
  function buildGrid() {
    var cells = new Array(G * G);
    for (var i = 0; i < st.n; i++) {
      var c = Math.min(G - 1, (st.x[i] * G / (SCALE + 1)) | 0) + G * Math.min(G - 1, (st.y[i] * G / (SCALE + 1)) | 0);
      (cells[c] || (cells[c] = [])).push(i);
    }
    st.grid = cells;
  }
  function nearest(px, py, radius) {
    var w = toWorld(px, py), rw = radius / st.view.k, best = -1, bd = rw * rw;
    var x0 = Math.max(0, ((w[0] - rw) * G / (SCALE + 1)) | 0), x1 = Math.min(G - 1, ((w[0] + rw) * G / (SCALE + 1)) | 0);
    var y0 = Math.max(0, ((w[1] - rw) * G / (SCALE + 1)) | 0), y1 = Math.min(G - 1, ((w[1] + rw) * G / (SCALE + 1)) | 0);
    for (var gy = y0; gy <= y1; gy++) for (var gx = x0; gx <= x1; gx++) {
      var cell = st.grid[gx + G * gy]; if (!cell) continue;
      for (var k = 0; k < cell.length; k++) {
        var i = cell[k]; if (!visible(i)) continue;
        var dx = st.x[i] - w[0], dy = st.y[i] - w[1], d = dx * dx + dy * dy;
        if (d < bd) { bd = d; best = i; }
      }
    }
    return best;
  }

  // ------------------------------------------------------------------ interaction
  function pos(ev) { var r = canvas.getBoundingClientRect(); return [(ev.clientX - r.left) * st.dpr, (ev.clientY - r.top) * st.dpr]; }
  var drag = null;
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = pos(ev), w = toWorld(p[0], p[1]), f = Math.exp(-ev.deltaY * 0.0015);
    st.view.k = Math.min(Math.max(st.view.k * f, 0.2 * Math.min(st.W, st.H) / SCALE), 400 * Math.min(st.W, st.H) / SCALE);
    st.view.cx = w[0] - (p[0] - st.W / 2) / st.view.k; st.view.cy = w[1] - (p[1] - st.H / 2) / st.view.k;
    draw();
  }, { passive: false });
  canvas.addEventListener("pointerdown", function (ev) {
    var p = pos(ev);
    drag = { p: p, view: { cx: st.view.cx, cy: st.view.cy }, select: ev.shiftKey, moved: false,
      lasso: ev.shiftKey && toolSel && toolSel.value === "lasso" ? [p[0], p[1]] : null };
    if (drag.lasso) lassoLine.setAttribute("points", "");
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", function (ev) {
    var p = pos(ev);
    if (drag) {
      var dx = p[0] - drag.p[0], dy = p[1] - drag.p[1];
      if (Math.abs(dx) + Math.abs(dy) > 3 * st.dpr) drag.moved = true;
      if (drag.lasso) {
        // every position the pointer went through, not only the ones of this (coalesced) event
        var evs = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
        if (!evs.length) evs = [ev];
        for (var e = 0; e < evs.length; e++) addLassoPoint(drag, pos(evs[e]));
        if (drag.moved) lassoEl.hidden = false;
      } else if (drag.select) {
        box.hidden = false;
        box.style.left = Math.min(p[0], drag.p[0]) / st.dpr + "px"; box.style.top = Math.min(p[1], drag.p[1]) / st.dpr + "px";
        box.style.width = Math.abs(dx) / st.dpr + "px"; box.style.height = Math.abs(dy) / st.dpr + "px";
      } else if (drag.moved) {
        st.view.cx = drag.view.cx - dx / st.view.k; st.view.cy = drag.view.cy - dy / st.view.k; draw();
      }
      return;
    }
    var i = nearest(p[0], p[1], 8 * st.dpr);
    if (i !== st.hover) { st.hover = i; draw(); showTip(i, p); } else if (i >= 0) moveTip(p);
  });
  // an interrupted drag (the pointer lost, a touch turned into a scroll) ends without selecting
  canvas.addEventListener("pointercancel", function () { drag = null; box.hidden = true; lassoEl.hidden = true; });
  canvas.addEventListener("pointerup", function (ev) {
    var p = pos(ev), d = drag; drag = null;
    if (!d) return;
    if (d.lasso && d.moved) { addLassoPoint(d, p); lassoEl.hidden = true; selectLasso(d.lasso); return; }
    if (d.select && d.moved) { box.hidden = true; selectBox(d.p, p); return; }
    box.hidden = true; lassoEl.hidden = true;
    if (!d.moved) {
      var i = nearest(p[0], p[1], 8 * st.dpr);
      if (i >= 0) window.location.href = "/painting/" + encodeURIComponent(st.ids[i]).replace(/%2F/g, "/");
    }
  });
  canvas.addEventListener("pointerleave", function () { if (!drag) { st.hover = -1; tip.hidden = true; draw(); } });

  function showTip(i, p) {
    if (i < 0) { tip.hidden = true; return; }
    tipImg.src = "/thumb/" + encodeURIComponent(st.ids[i]).replace(/%2F/g, "/") + "?size=128";
    tipTitle.textContent = st.titles[i] || st.ids[i];
    tipDate.textContent = [st.dates[i], st.color && st.codes[i] >= 0 ? String(st.color.values[st.codes[i]]).replace(/_/g, " ") : ""]
      .filter(Boolean).join(" · ");
    tip.hidden = false; moveTip(p);
  }
  function moveTip(p) {
    var x = p[0] / st.dpr + 14, y = p[1] / st.dpr + 14, w = stage.clientWidth, h = stage.clientHeight;
    if (x + 300 > w) x = Math.max(0, p[0] / st.dpr - 310);
    if (y + 110 > h) y = Math.max(0, p[1] / st.dpr - 110);
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function selectBox(a, b) {
    var x0 = Math.min(a[0], b[0]), x1 = Math.max(a[0], b[0]), y0 = Math.min(a[1], b[1]), y1 = Math.max(a[1], b[1]);
    var sel = new Uint8Array(st.n), count = 0;
    for (var i = 0; i < st.n; i++) {
      if (!visible(i)) continue;
      var x = sx(i), y = sy(i);
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) { sel[i] = 1; count++; }
    }
    setSelection(sel, count);
  }
  function setSelection(sel, count) {
    st.selected = count ? sel : null; st.nSelected = count;
    selCard.hidden = !count; selCount.textContent = count.toLocaleString(); draw();
  }
  // the lasso: canvas pixels [x0, y0, x1, y1, ...], a new vertex once the pointer is 2 CSS px from the last
  function addLassoPoint(d, p) {
    var v = d.lasso, lx = v[v.length - 2], ly = v[v.length - 1];
    if ((p[0] - lx) * (p[0] - lx) + (p[1] - ly) * (p[1] - ly) < 4 * st.dpr * st.dpr) return;
    v.push(p[0], p[1]);
    var pts = lassoLine.getAttribute("points");
    if (!pts) pts = (v[0] / st.dpr) + "," + (v[1] / st.dpr);
    lassoLine.setAttribute("points", pts + " " + (p[0] / st.dpr) + "," + (p[1] / st.dpr));
  }
  // the points inside the closed polygon (even-odd rule), as shown now (zoom, pan, hidden colours, filter):
  // one pass over the points; a bounding-box test first, then only the edges that span the point's band of rows
  function selectLasso(v) {
    var m = v.length / 2, sel = new Uint8Array(st.n), count = 0;
    st.lastLasso = v.map(function (c) { return c / st.dpr; });
    if (m < 3) { setSelection(sel, 0); return; }
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, j, e;
    for (j = 0; j < m; j++) {
      x0 = Math.min(x0, v[2 * j]); x1 = Math.max(x1, v[2 * j]);
      y0 = Math.min(y0, v[2 * j + 1]); y1 = Math.max(y1, v[2 * j + 1]);
    }
    var NB = Math.max(1, Math.min(256, m)), bh = (y1 - y0) / NB || 1, bands = [];
    for (j = 0; j < NB; j++) bands.push([]);
    for (j = 0; j < m; j++) {  // edge j: vertex j to vertex j+1 (the last one closes the polygon)
      var k = (j + 1) % m, ya = Math.min(v[2 * j + 1], v[2 * k + 1]), yb = Math.max(v[2 * j + 1], v[2 * k + 1]);
      var b0 = Math.min(NB - 1, Math.floor((ya - y0) / bh)), b1 = Math.min(NB - 1, Math.floor((yb - y0) / bh));
      for (var b = b0; b <= b1; b++) bands[b].push(2 * j, 2 * k);
    }
    var cx = st.view.cx, cy = st.view.cy, kk = st.view.k, W2 = st.W / 2, H2 = st.H / 2;
    for (var i = 0; i < st.n; i++) {
      var x = (st.x[i] - cx) * kk + W2, y = (st.y[i] - cy) * kk + H2;
      if (x < x0 || x > x1 || y < y0 || y > y1 || !visible(i)) continue;
      var band = bands[Math.min(NB - 1, Math.floor((y - y0) / bh))], inside = false;
      for (e = 0; e < band.length; e += 2) {
        var ax = v[band[e]], ay = v[band[e] + 1], bx = v[band[e + 1]], by = v[band[e + 1] + 1];
        if ((ay > y) !== (by > y) && x < (bx - ax) * (y - ay) / (by - ay) + ax) inside = !inside;
      }
      if (inside) { sel[i] = 1; count++; }
    }
    setSelection(sel, count);
  }
  function sendSelection(where) {
    var ids = [];
    for (var i = 0; i < st.n; i++) if (st.selected && st.selected[i]) ids.push(st.ids[i]);
    fetch("/api/selections", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfMeta ? csrfMeta.content : "" },
      body: JSON.stringify({ ids: ids }) })
      .then(function (r) { return r.json(); })
      .then(function (j) { window.location.href = where === "review" ? j.review_url : j.gallery_url; });
  }
  document.getElementById("map-sel-gallery").addEventListener("click", function () { sendSelection("gallery"); });
  var rv = document.getElementById("map-sel-review");
  if (rv) rv.addEventListener("click", function () { sendSelection("review"); });
  document.getElementById("map-sel-clear").addEventListener("click", function () {
    st.selected = null; st.nSelected = 0; selCard.hidden = true; draw();
  });
  document.getElementById("map-reset").addEventListener("click", fit);
  filterBox.addEventListener("input", applyFilter);
  colorSel.addEventListener("change", function () {
    statusEl.textContent = "colouring…";
    api({ layout: layoutSel.value, color: colorSel.value, parts: "color" }).then(function (d) {
      setColour(d.color); status(); syncUrl();
    });
  });
  layoutSel.addEventListener("change", function () {
    statusEl.textContent = "laying out…";
    api({ layout: layoutSel.value, parts: "xy" }).then(function (d) { setXY(d); status(); syncUrl(); })
      .catch(function (e) { statusEl.textContent = String(e.message || e); });
  });
  function syncUrl() {
    history.replaceState(null, "", "/map?layout=" + encodeURIComponent(layoutSel.value) + "&color=" + encodeURIComponent(colorSel.value));
  }
  function status(extra) {
    statusEl.textContent = st.n.toLocaleString() + " paintings" + (st.flagged && st.flagged.length ? " · " + st.flagged.length.toLocaleString() + " flagged" : "") +
      (st.notOnMap ? " · " + st.notOnMap.toLocaleString() + " not in the embedding" : "") + (extra || "");
  }
  window.addEventListener("resize", resize);

  // ------------------------------------------------------------------ load
  var t0 = performance.now();
  api({ layout: script.dataset.layout || "embedding", color: script.dataset.color || "" }).then(function (d) {
    st.n = d.n; st.notOnMap = d.not_on_map;
    st.ids = d.n ? d.ids.split("\n").map(function (m) { return d.ids_prefix + m + d.ids_suffix; }) : [];
    st.titles = d.n ? d.titles.split("\n") : [];
    st.dates = d.dates.map(function (v) { return v === null ? "" : String(v); });
    st.flagged = Int32Array.from(d.flagged);
    resize(); setXY(d); setColour(d.color); status();
    window.artMap = {
      ready: true, n: st.n, ids: st.ids, loadMs: performance.now() - t0,
      // CSS-pixel position of a point inside the canvas (for tests and tools)
      pointAt: function (i) { return [sx(i) / st.dpr, sy(i) / st.dpr]; },
      // the view (canvas pixels: a point is at (x - cx) * k + W / 2, (y - cy) * k + H / 2), the last lasso (CSS px)
      view: function () { return { cx: st.view.cx, cy: st.view.cy, k: st.view.k, W: st.W, H: st.H, dpr: st.dpr }; },
      lastLasso: function () { return st.lastLasso; },
      nSelected: function () { return st.selected ? st.nSelected : 0; },
      indexOf: function (id) { return st.ids.indexOf(id); },
      colourField: function () { return st.color ? st.color.field : null; }
    };
    canvas.dataset.ready = "1";
  }).catch(function (e) { statusEl.textContent = "the map could not load: " + (e.message || e); });
})();
