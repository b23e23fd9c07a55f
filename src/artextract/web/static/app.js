// ArtExtract explorer: progressive enhancement only; every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    // ---------------------------------------------------------------- tabs
    document.querySelectorAll("[data-tabs]").forEach(function (box) {
      var buttons = box.querySelectorAll("[data-tab]");
      var panels = box.querySelectorAll("[data-panel]");
      function load(panel) {
        if (!panel.dataset.src || panel.dataset.loaded) return;
        panel.dataset.loaded = "1";
        panel.innerHTML = '<div class="busy on"><div class="spinner"></div> Searching… ' +
          '(the first face or pose search also scans the index)</div>';
        fetch(panel.dataset.src, { headers: { "Accept": "text/html" } })
          .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, text: t }; }); })
          .then(function (r) {
            panel.innerHTML = r.text;
            panel.classList.add("loaded");
            var btn = box.querySelector('[data-tab="' + panel.dataset.panel + '"]');
            var n = panel.querySelectorAll(".tile").length;
            if (btn && !btn.querySelector(".n")) {
              var s = document.createElement("span"); s.className = "n"; s.textContent = String(n); btn.appendChild(s);
            }
          })
          .catch(function (e) {
            panel.dataset.loaded = "";
            panel.innerHTML = '<div class="notice error">Search failed: ' + String(e).replace(/</g, "&lt;") + "</div>";
          });
      }
      function show(name) {
        buttons.forEach(function (b) { b.setAttribute("aria-selected", String(b.dataset.tab === name)); });
        panels.forEach(function (p) {
          var on = p.dataset.panel === name;
          p.classList.toggle("active", on);
          if (on) load(p);
        });
      }
      buttons.forEach(function (b) {
        b.addEventListener("click", function () { show(b.dataset.tab); });
      });
      if (buttons.length) show(box.dataset.active || buttons[0].dataset.tab);
    });

    // ---------------------------------------------------------------- gallery filters submit on change
    document.querySelectorAll("form[data-autosubmit] select, form[data-autosubmit] input[type=checkbox]")
      .forEach(function (el) {
        el.addEventListener("change", function () { el.form.submit(); });
      });

    // ---------------------------------------------------------------- upload drop zone
    var zone = document.querySelector("[data-dropzone]");
    if (zone) {
      var form = zone.closest("form");
      var input = zone.querySelector("input[type=file]");
      var busy = document.querySelector(".busy");
      var submit = function () {
        if (!input.files || !input.files.length) return;
        if (busy) busy.classList.add("on");
        form.submit();
      };
      ["dragenter", "dragover"].forEach(function (ev) {
        zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (ev) {
        zone.addEventListener(ev, function (e) { e.preventDefault(); zone.classList.remove("over"); });
      });
      zone.addEventListener("drop", function (e) {
        if (e.dataTransfer && e.dataTransfer.files.length) {
          input.files = e.dataTransfer.files;
          submit();
        }
      });
      input.addEventListener("change", submit);
      // paste an image from the clipboard
      document.addEventListener("paste", function (e) {
        var items = (e.clipboardData && e.clipboardData.files) || [];
        if (!items.length || !/^image\//.test(items[0].type)) return;
        try {
          var dt = new DataTransfer();
          dt.items.add(items[0]);
          input.files = dt.files;
          e.preventDefault();
          submit();
        } catch (err) { /* old browsers: the file chooser still works */ }
      });
      form.addEventListener("submit", function () { if (busy) busy.classList.add("on"); });
    }

    // ---------------------------------------------------------------- review keyboard shortcuts
    var keys = { a: "btn-accept", k: "btn-keep", j: "link-next", ArrowRight: "link-next", ArrowLeft: "link-prev",
                 u: "btn-undo" };
    if (document.getElementById("review-item")) {
      document.addEventListener("keydown", function (e) {
        var t = e.target;
        if (e.ctrlKey || e.metaKey || e.altKey) return;
        if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
        var id = keys[e.key];
        if (!id) return;
        var el = document.getElementById(id);
        if (el && !el.disabled) { e.preventDefault(); el.click(); }
      });
    }
  });
  ready(function () {
    // ---------------------------------------------------------------- where the model looked: one click per task
    document.querySelectorAll("[data-explain-task]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var img = document.getElementById("explain-img"), note = document.getElementById("explain-note");
        document.querySelectorAll("[data-explain-task]").forEach(function (b) { b.classList.toggle("on", b === btn); });
        note.textContent = "computing…";
        img.onload = function () { img.hidden = false; img.classList.add("loaded"); note.textContent = ""; };
        img.onerror = function () { note.textContent = "the explanation could not be computed"; };
        img.src = btn.dataset.explainSrc;
      });
    });
  });
})();
