/* lstm-cli report: draws the page from the JSON in #lstm-data and runs select-and-match.
 *
 * Select-and-match (the same definition as `lstm-cli units --select/--match`):
 * - units: every (layer, direction, unit), layer-major, forward before backward, then unit;
 * - q: each value v of the state (tanh(c) or h) as ceil(100 v) - 1, clipped to [-101, 99]
 *   (computed in Python, carried as int8, unit-major);
 * - a threshold t (two decimals at most, in [-0.99, 0.99]) gives k = round(100 t); a unit is ON at
 *   step s iff q >= k;
 * - selecting [a, b): a unit is selected iff it is ON at every step of [a, b) and OFF at every
 *   step of [a - margin, a) and [b, b + margin) inside [0, T);
 * - matching: need = ceil(|S| / 2); hits(s) = selected units ON at s; runs = maximal intervals
 *   with hits >= need at every step, at least minLength long; R = every unit ON at every step of
 *   the run; matched = |S & R|, others = |R - S|, score = matched / |S | R|; ranked by matched
 *   desc, others asc, length desc, start asc. The run that overlaps [a, b) is marked.
 * - sign: "positive" (default, as LSTMVis) considers each unit as above; "both" also considers
 *   each unit's negative side, ON at step s iff q <= -k - 1 (equal to v <= -t except within
 *   1e-15 of the grid), for a threshold t >= 0 so that the two sides never overlap. The units
 *   are then every unit's positive side in the order above (indices 0..U-1), followed by every
 *   unit's negative side in the same order (U..2U-1); selection and matching treat the two
 *   sides as separate units (S, R, need, others and score count over all 2U sides).
 * window.lstmReport.select(a, b, {threshold, margin, minLength, top, sign}) is that function; the
 * mouse, the keyboard and the tests all go through it. On the page a negative side is named
 * like "1:109−" and its trace is drawn as -v, so ON is above the dashed threshold line.
 */
(function () {
  "use strict";

  var api = { ready: false, readyAt: null, last: null };
  window.lstmReport = api;

  var D = JSON.parse(document.getElementById("lstm-data").textContent);
  api.data = D;

  // -- data ---------------------------------------------------------------------------------

  function decode(b64) {
    var s = atob(b64);
    var out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  var T = D.input.shown;
  var U = D.units;
  var Q = new Int8Array(decode(D.q).buffer);
  var UNITS = [];
  D.layers.forEach(function (L) {
    for (var u = 0; u < L.units; u++) UNITS.push({ layer: L.layer, direction: L.direction, unit: u });
  });
  var IS_TEXT = D.input.kind === "text";
  var CHARS = IS_TEXT ? Array.from(D.input.text) : null;
  var LABEL = D.state.label;
  if (Q.length !== U * T || UNITS.length !== U || (IS_TEXT && CHARS.length !== T)) {
    throw new Error("lstm-cli report: the page's data is inconsistent");
  }
  var BIDIRECTIONAL = D.layers.some(function (L) { return L.direction === "backward"; });

  var MINUS = "\u2212";
  // u in 0..U-1: a unit (its positive side); u in U..2U-1: unit u - U's negative side (sign both)
  function unitName(u) {
    var x = UNITS[u % U];
    return x.layer + ":" + x.unit + (x.direction === "backward" ? ":b" : "") + (u >= U ? MINUS : "");
  }
  function unitLong(u) {
    var x = UNITS[u % U];
    return "layer " + x.layer + (BIDIRECTIONAL ? " " + x.direction : "") + " unit " + x.unit + (u >= U ? ", negative side" : "");
  }
  function unitIndex(layer, direction, unit) {
    for (var j = 0; j < D.layers.length; j++) {
      var L = D.layers[j];
      if (L.layer === layer && L.direction === direction) return unit >= 0 && unit < L.units ? L.offset + unit : -1;
    }
    return -1;
  }

  // -- select and match ----------------------------------------------------------------------

  function thresholdK(t) {
    if (typeof t !== "number" || !isFinite(t) || t < -0.99 - 1e-9 || t > 0.99 + 1e-9) {
      throw new RangeError("threshold must be between -0.99 and 0.99 (got " + t + ")");
    }
    var k = Math.round(100 * t);
    if (Math.abs(100 * t - k) > 1e-6) throw new RangeError("threshold takes two decimals at most (got " + t + ")");
    return k;
  }

  function wholeNumber(value, least, name) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < least) {
      throw new RangeError(name + " must be a whole number, " + least + " or more (got " + value + ")");
    }
    return value;
  }

  var SIGNS = { positive: "on where the value is above the threshold", both: "also on where the value is below minus the threshold" };

  function checkSign(sign, k) {
    if (!Object.prototype.hasOwnProperty.call(SIGNS, sign)) {
      throw new RangeError("sign must be positive (units on above the threshold, as LSTMVis) or both (also units on below minus the threshold) (got " + sign + ")");
    }
    if (sign === "both" && k < 0) {
      throw new RangeError("sign both needs a threshold of 0 or more, so that a unit's two sides never overlap (got " + (k / 100) + ")");
    }
    return sign;
  }
  function sideCount(sign) { return sign === "both" ? 2 * U : U; }

  // ON: a positive side (u < U) iff q >= k; a negative side (u >= U, unit u - U) iff q <= -k - 1.
  function isOn(u, s, k) { return u < U ? Q[u * T + s] >= k : Q[(u - U) * T + s] <= -k - 1; }

  function onThroughout(u, c, d, k) {
    var s;
    if (u < U) { var base = u * T; for (s = c; s < d; s++) if (Q[base + s] < k) return false; return true; }
    var nbase = (u - U) * T, low = -k - 1;
    for (s = c; s < d; s++) if (Q[nbase + s] > low) return false;
    return true;
  }

  function offThroughout(u, c, d, k) {
    for (var s = c; s < d; s++) if (isOn(u, s, k)) return false;
    return true;
  }

  function selectedUnits(a, b, k, margin, n) {
    var S = [];
    var lo = Math.max(0, a - margin), hi = Math.min(T, b + margin);
    for (var u = 0; u < n; u++) {
      if (!onThroughout(u, a, b, k)) continue;
      if (margin > 0 && !(offThroughout(u, lo, a, k) && offThroughout(u, b, hi, k))) continue;
      S.push(u);
    }
    return S;
  }

  function matchRuns(S, k, minLength, a, b, n) {
    if (!S.length) return [];
    var need = Math.ceil(S.length / 2);
    var hits = new Int32Array(T);
    var inS = new Uint8Array(n);
    S.forEach(function (u) {
      inS[u] = 1;
      for (var s = 0; s < T; s++) if (isOn(u, s, k)) hits[s]++;
    });
    var runs = [];
    var s = 0;
    while (s < T) {
      if (hits[s] < need) { s++; continue; }
      var e = s;
      while (e < T && hits[e] >= need) e++;
      if (e - s >= minLength) runs.push([s, e]);
      s = e;
    }
    var out = runs.map(function (run) {
      var c = run[0], d = run[1], matched = 0, others = 0;
      for (var u = 0; u < n; u++) {
        if (onThroughout(u, c, d, k)) { if (inS[u]) matched++; else others++; }
      }
      return {
        start: c, end: d, matched: matched, others: others,
        score: matched / (S.length + others),
        selection: c < b && d > a,
      };
    });
    out.sort(function (x, y) {
      return (y.matched - x.matched) || (x.others - y.others) || ((y.end - y.start) - (x.end - x.start)) || (x.start - y.start);
    });
    return out;
  }

  /* The definition above, on the page's data. `top`: matches returned (default the page's
   * setting; 0, null or Infinity: all). `sign`: "positive" or "both" (default the page's). */
  function select(a, b, opts) {
    opts = opts || {};
    var t = opts.threshold !== undefined ? opts.threshold : ui.threshold;
    var sign = opts.sign !== undefined ? opts.sign : ui.sign;
    var margin = opts.margin !== undefined ? opts.margin : ui.margin;
    var minLength = opts.minLength !== undefined ? opts.minLength : ui.minLength;
    var top = opts.top !== undefined ? opts.top : ui.top;
    wholeNumber(a, 0, "start");
    wholeNumber(b, 1, "end");
    if (!(a < b && b <= T)) throw new RangeError("a span [a, b) needs 0 <= a < b <= " + T + " (got [" + a + ", " + b + "))");
    wholeNumber(margin, 0, "margin");
    wholeNumber(minLength, 1, "minLength");
    var k = thresholdK(t);
    checkSign(sign, k);
    var n = sideCount(sign);
    var S = selectedUnits(a, b, k, margin, n);
    var runs = matchRuns(S, k, minLength, a, b, n);
    var shown = !top || top === Infinity ? runs : runs.slice(0, top);
    return {
      span: [a, b], threshold: k / 100, k: k, margin: margin, minLength: minLength, sign: sign, sides: n,
      selected: S.map(function (u) {
        var x = UNITS[u % U];
        return { layer: x.layer, direction: x.direction, unit: x.unit, sign: u < U ? 1 : -1 };
      }),
      units: S,  // indices: 0..U-1 positive sides, U..2U-1 negative sides
      matches: shown.map(function (m) { return Object.assign({}, m); }),
      total: runs.length,
    };
  }

  // -- page state ----------------------------------------------------------------------------

  var ui = {
    threshold: D.state.threshold, margin: D.state.margin, minLength: D.state.min_length,
    top: D.state.top, sign: D.state.sign || "positive", span: null, result: null, colourUnit: D.default_unit,
    caret: 0, anchor: 0, traceStart: 0, traceWidth: 80, current: null, sortKey: "index", sortDesc: false,
  };

  function $(id) { return document.getElementById(id); }
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "NaN";
    if (v === 0) return "0";
    return Number(v).toPrecision(digits || 3).replace(/(\.\d*?)0+(e|$)/, "$1$2").replace(/\.(e|$)/, "$1");
  }
  function pct(v) { return v === null || v === undefined ? "-" : (100 * v).toFixed(1) + "%"; }
  function shownChar(c) {
    if (c === "\n") return "\u21b5";
    if (c === "\t") return "\u2192";
    if (c === " ") return "\u00b7";
    if (c < " " || c === "\u007f") return "\u00b7";
    return c;
  }
  function where(s) {
    return IS_TEXT ? "character " + s + " " + JSON.stringify(CHARS[s]) : "step " + s;
  }
  function snippet(c, d, most) {
    if (!IS_TEXT) return "";
    var part = CHARS.slice(c, Math.min(d, c + most)).map(shownChar).join("");
    return part + (d - c > most ? "\u2026" : "");
  }
  function valueRange(q) { return q <= -101 ? "\u2264 -1" : "(" + (q / 100).toFixed(2) + ", " + ((q + 1) / 100).toFixed(2) + "]"; }

  // -- colours -------------------------------------------------------------------------------

  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var PAL = {};
  function setPalette() {
    PAL = dark ? {
      low: [67, 147, 195], mid: [38, 42, 50], high: [224, 102, 80],
      seqLow: [30, 34, 40], seqHigh: [86, 211, 120],
    } : {
      low: [33, 102, 172], mid: [247, 247, 247], high: [178, 24, 43],
      seqLow: [255, 255, 255], seqHigh: [0, 90, 50],
    };
    PAL.css = getComputedStyle(document.documentElement);
  }
  function cssVar(name) { return PAL.css.getPropertyValue(name).trim() || "#888"; }
  function mix(a, b, t) {
    t = Math.min(1, Math.max(0, t));
    return [Math.round(a[0] + (b[0] - a[0]) * t), Math.round(a[1] + (b[1] - a[1]) * t), Math.round(a[2] + (b[2] - a[2]) * t)];
  }
  function diverging(p) { return p < 0.5 ? mix(PAL.mid, PAL.low, 1 - 2 * p) : mix(PAL.mid, PAL.high, 2 * p - 1); }
  function sequential(p) { return mix(PAL.seqLow, PAL.seqHigh, p); }
  function rgb(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function ink(c) { return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] > 140 ? "#000" : "#fff"; }
  var LINE_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"];
  var LAYER_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  var Q_COLOUR = [], Q_INK = [];
  function qPalette() {
    Q_COLOUR = []; Q_INK = [];
    for (var q = -101; q <= 99; q++) {
      var v = Math.max(-1, Math.min(1, (q + 0.5) / 100));
      var c = diverging((v + 1) / 2);
      Q_COLOUR.push(rgb(c)); Q_INK.push(ink(c));
    }
  }

  // -- tooltip -------------------------------------------------------------------------------

  var tip = $("tip");
  function showTip(text, x, y) {
    tip.textContent = text;
    tip.hidden = false;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = x + 14, top = y + 14;
    if (left + w > window.innerWidth - 4) left = Math.max(4, x - w - 14);
    if (top + h > window.innerHeight - 4) top = Math.max(4, y - h - 14);
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }
  function hideTip() { tip.hidden = true; }

  // -- header, verification, notes -----------------------------------------------------------

  function drawHeader() {
    $("provenance").textContent = D.header.join("\n");
    var V = D.verification;
    var badge = $("verdict");
    badge.textContent = V.passed ? "passed" : "FAILED";
    badge.className = "badge " + (V.passed ? "ok" : "bad");
    var html = V.sentences.map(function (s) { return "<p>" + esc(s) + "</p>"; }).join("");
    html += '<table class="checks"><thead><tr><th class="name">check</th><th>max |diff|</th><th>bound</th>' +
      "<th>used</th><th>result</th></tr></thead><tbody>";
    V.checks.forEach(function (c) {
      html += '<tr><td class="name">' + esc(c.name) + "</td><td>" + esc(c.max_abs_diff) + "</td><td>" + esc(c.bound) +
        "</td><td>" + esc(c.used) + '</td><td class="' + (c.passed ? "pass" : "fail") + '">' + (c.passed ? "passed" : "FAILED") + "</td></tr>";
    });
    html += "</tbody></table>";
    $("verification").innerHTML = html;
    $("notes").innerHTML = D.notes.map(function (n) { return "<li>" + esc(n) + "</li>"; }).join("");
  }

  // -- the input: characters or steps ---------------------------------------------------------

  var tv = $("textview");
  var spans = [];
  var STEP_ROW = 50;

  function buildInput() {
    var parts = [];
    if (IS_TEXT) {
      for (var i = 0; i < T; i++) {
        var c = CHARS[i], cls = "ch", shown;
        if (c === "\n") { cls += " nl"; shown = "\u21b5\n"; }
        else if (c === "\t") { cls += " ctl"; shown = "\u2192"; }
        else if (c < " " || c === "\u007f") { cls += " ctl"; shown = "\u00b7"; }
        else shown = esc(c);
        parts.push('<span class="' + cls + '" data-i="' + i + '">' + shown + "</span>");
      }
    } else {
      for (var s = 0; s < T; s++) {
        if (s % STEP_ROW === 0) parts.push((s ? "\n" : "") + '<span class="rowlabel">' + s + "</span>");
        parts.push('<span class="ch step" data-i="' + s + '"></span>');
      }
    }
    tv.innerHTML = parts.join("");
    spans = Array.prototype.slice.call(tv.querySelectorAll(".ch"));
  }

  function colourInput() {
    var base = ui.colourUnit * T;
    for (var i = 0; i < T; i++) {
      var j = Q[base + i] + 101, st = spans[i].style;
      st.backgroundColor = Q_COLOUR[j];
      st.color = Q_INK[j];
    }
    var u = ui.colourUnit, st = D.stats;
    $("unit-picked").textContent = unitLong(u) + " (" + unitName(u) + "): " + LABEL + " mean " + fmt(st.mean[u]) +
      ", min " + fmt(st.min[u]) + ", max " + fmt(st.max[u]);
    $("unit-pick").value = unitName(u);
    drawLegend();
  }

  function drawLegend() {
    var box = $("legend");
    box.innerHTML = "";
    var cv = document.createElement("canvas");
    cv.width = 120; cv.height = 10;
    var ctx = cv.getContext("2d");
    for (var x = 0; x < 120; x++) { ctx.fillStyle = rgb(diverging(x / 119)); ctx.fillRect(x, 0, 1, 10); }
    var lo = document.createElement("span"); lo.textContent = "-1";
    var hi = document.createElement("span"); hi.textContent = "+1 " + LABEL;
    box.appendChild(lo); box.appendChild(cv); box.appendChild(hi);
  }

  function setUnit(u, quiet) {
    if (u < 0 || u >= U) return;
    ui.colourUnit = u;
    colourInput();
    markPickedRow(true);
    if (!quiet) drawTrace();
  }

  var marked = { sel: [], match: [], current: [], caret: -1 };
  function clearClass(name) {
    marked[name].forEach(function (i) { spans[i].classList.remove(name); });
    marked[name] = [];
  }
  function addClass(name, c, d) {
    for (var i = c; i < d; i++) { spans[i].classList.add(name); marked[name].push(i); }
  }
  function markSelection(a, b) { clearClass("sel"); if (a !== null) addClass("sel", a, b); }
  function markCaret() {
    if (marked.caret >= 0 && spans[marked.caret]) spans[marked.caret].classList.remove("caret");
    marked.caret = ui.caret;
    if (document.activeElement === tv) spans[ui.caret].classList.add("caret");
  }

  function scrollToStep(s) {
    var el = spans[s];
    if (!el) return;
    var top = el.offsetTop - tv.clientHeight / 2;
    tv.scrollTop = Math.max(0, top);
  }

  // -- selection from the mouse and the keyboard -----------------------------------------------

  var drag = null;
  function indexOf(target) {
    var el = target && target.closest ? target.closest(".ch") : null;
    return el && tv.contains(el) ? +el.getAttribute("data-i") : -1;
  }
  tv.addEventListener("mousedown", function (e) {
    if (e.button !== 0) return;
    var i = indexOf(e.target);
    if (i < 0) return;
    e.preventDefault();
    tv.focus({ preventScroll: true });
    drag = { anchor: i, at: i };
    ui.caret = i; ui.anchor = i;
    markSelection(i, i + 1);
  });
  tv.addEventListener("mousemove", function (e) {
    var i = indexOf(e.target);
    if (drag) {
      if (i >= 0 && i !== drag.at) {
        drag.at = i;
        markSelection(Math.min(drag.anchor, i), Math.max(drag.anchor, i) + 1);
      }
      hideTip();
      return;
    }
    if (i < 0) { hideTip(); return; }
    var q = Q[ui.colourUnit * T + i], k = thresholdK(ui.threshold);
    showTip(where(i) + "\n" + unitLong(ui.colourUnit) + ": " + LABEL + " " + valueRange(q) +
      (q >= k ? " (ON)" : ui.sign === "both" && q <= -k - 1 ? " (its negative side " + unitName(ui.colourUnit + U) + " is ON)" : " (off)"),
      e.clientX, e.clientY);
  });
  tv.addEventListener("mouseleave", hideTip);
  window.addEventListener("mouseup", function () {
    if (!drag) return;
    var a = Math.min(drag.anchor, drag.at), b = Math.max(drag.anchor, drag.at) + 1;
    drag = null;
    ui.anchor = a; ui.caret = b - 1;
    runSelection(a, b);
  });

  function lineStart(s) { while (s > 0 && CHARS[s - 1] !== "\n") s--; return s; }
  function lineEnd(s) { while (s < T - 1 && CHARS[s] !== "\n") s++; return s; }
  function vertical(s, down) {
    if (!IS_TEXT) return Math.max(0, Math.min(T - 1, s + (down ? STEP_ROW : -STEP_ROW)));
    var start = lineStart(s), column = s - start;
    if (down) {
      var end = lineEnd(s);
      if (end >= T - 1) return T - 1;
      return Math.min(end + 1 + column, lineEnd(end + 1));
    }
    if (start === 0) return 0;
    var previous = lineStart(start - 1);
    return Math.min(previous + column, start - 1);
  }
  tv.addEventListener("keydown", function (e) {
    var c = ui.caret, next = null;
    if (e.key === "ArrowRight") next = Math.min(T - 1, c + 1);
    else if (e.key === "ArrowLeft") next = Math.max(0, c - 1);
    else if (e.key === "ArrowDown") next = vertical(c, true);
    else if (e.key === "ArrowUp") next = vertical(c, false);
    else if (e.key === "Home") next = IS_TEXT ? lineStart(c) : 0;
    else if (e.key === "End") next = IS_TEXT ? lineEnd(c) : T - 1;
    else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      runSelection(Math.min(ui.anchor, c), Math.max(ui.anchor, c) + 1);
      return;
    } else if (e.key === "Escape") { clearSelection(); return; }
    if (next === null) return;
    e.preventDefault();
    ui.caret = next;
    if (!e.shiftKey) ui.anchor = next;
    markSelection(Math.min(ui.anchor, next), Math.max(ui.anchor, next) + 1);
    markCaret();
    var el = spans[next];
    if (el.offsetTop < tv.scrollTop + 10 || el.offsetTop > tv.scrollTop + tv.clientHeight - 30) scrollToStep(next);
  });
  tv.addEventListener("focus", markCaret);
  tv.addEventListener("blur", function () { if (marked.caret >= 0) spans[marked.caret].classList.remove("caret"); });

  // -- running a selection and showing its matches ------------------------------------------------

  function runSelection(a, b, keepWindow) {
    ui.span = [a, b];
    $("sel-from").value = a;
    $("sel-to").value = b;
    var result = select(a, b, { top: 0 });
    ui.result = result;
    api.last = Object.assign({}, result, { matches: result.matches.slice(0, ui.top) });  // as shown
    markSelection(a, b);
    if (!keepWindow) centreTrace(a, b);
    showSelected();
    showMatches();
    updateUnitTable();
    drawTrace();
  }

  function clearSelection() {
    ui.span = null; ui.result = null; ui.current = null; api.last = null;
    markSelection(null);
    clearClass("match"); clearClass("current");
    $("selected").textContent = "";
    $("matches").innerHTML = "";
    updateUnitTable();
    drawTrace();
  }

  function refresh() {
    if (ui.span) runSelection(ui.span[0], ui.span[1], true);
    else { updateUnitTable(); drawTrace(); }
    if (document.activeElement === tv) markCaret();
  }

  function showSelected() {
    var r = ui.result, box = $("selected");
    var both = r.sign === "both", t = r.threshold.toFixed(2), minusT = (-r.threshold).toFixed(2).replace("-", MINUS);
    if (!r.units.length) {
      box.innerHTML = "<p>No unit is ON (" + esc(LABEL) + " above " + t + (both ? ", or below " + minusT + " for a negative side" : "") +
        ") at every step of [" + r.span[0] + ", " + r.span[1] + ") and OFF within the margin of " + r.margin +
        ": lower the threshold or the margin, " + (both || r.k < 0 ? "" : "try sign both, ") + "or select fewer steps.</p>";
      return;
    }
    var negative = r.units.filter(function (u) { return u >= U; }).length;
    var html = "<p><strong>" + r.units.length + " unit" + (r.units.length === 1 ? "" : "s") + " selected</strong>" +
      (both ? " (" + negative + " negative side" + (negative === 1 ? "" : "s") + ", named with " + MINUS + ": ON where " +
        esc(LABEL) + " is below " + minusT + ")" : "") + " for [" +
      r.span[0] + ", " + r.span[1] + ") at threshold " + t + ", margin " + r.margin + (both ? ", sign both" : "") +
      " (click one to colour the input by its unit):</p><div>";
    r.units.forEach(function (u, n) {
      var mean = 0, base = (u % U) * T;
      for (var s = r.span[0]; s < r.span[1]; s++) mean += Q[base + s];
      mean = mean / (r.span[1] - r.span[0]) / 100;
      html += '<button type="button" class="chip' + (u >= U ? " neg" : "") + '" data-unit="' + u + '" title="' + esc(unitLong(u)) +
        (u >= U ? " (ON where " + LABEL + " is below " + minusT + ")" : "") + ": mean " + LABEL +
        " over the span about " + mean.toFixed(2) + '"><span class="dot" style="background:' +
        LINE_COLOURS[n % LINE_COLOURS.length] + '"></span>' + esc(unitName(u)) + "</button>";
    });
    box.innerHTML = html + "</div>";
  }
  $("selected").addEventListener("click", function (e) {
    var chip = e.target.closest && e.target.closest("[data-unit]");
    if (chip) setUnit(+chip.getAttribute("data-unit") % U);
  });

  function showMatches() {
    var r = ui.result, box = $("matches");
    clearClass("match"); clearClass("current");
    if (!r.units.length) { box.innerHTML = ""; return; }
    var need = Math.ceil(r.units.length / 2);
    var shown = r.matches.slice(0, ui.top);
    var html = "<h3>Matches</h3><p class=\"help\">" + r.total + " run" + (r.total === 1 ? "" : "s") + " where at least " + need +
      " of the " + r.units.length + " selected units are ON (at least " + r.minLength + " step" + (r.minLength === 1 ? "" : "s") +
      " long), ranked by selected units ON throughout (matched), then fewest other units ON throughout" +
      (r.sign === "both" ? " (of the " + r.sides + " unit sides: every unit and its negative side)" : "") + ", longest, earliest. " +
      "Score = matched / (selected + others)." + (function () {
        for (var n = 0; n < r.matches.length; n++) if (r.matches[n].selection) return " The selection's own run ranks " + (n + 1) + ".";
        return "";
      })() + "</p>";
    html += '<table class="matchtable"><thead><tr><th>#</th><th class="name">' + (IS_TEXT ? "characters" : "steps") +
      "</th><th>length</th>" + (IS_TEXT ? '<th class="name">text</th>' : "") +
      "<th>matched</th><th>others</th><th>score</th><th class=\"name\"></th></tr></thead><tbody>";
    shown.forEach(function (m, n) {
      html += "<tr" + (m.selection ? ' class="selection"' : "") + "><td>" + (n + 1) + '</td><td class="name"><a href="#" data-match="' + n +
        '">' + m.start + "\u2013" + (m.end - 1) + "</a></td><td>" + (m.end - m.start) + "</td>" +
        (IS_TEXT ? '<td class="name mono">' + esc(snippet(m.start, m.end, 40)) + "</td>" : "") +
        "<td>" + m.matched + "</td><td>" + m.others + "</td><td>" + m.score.toFixed(3) + '</td><td class="name">' +
        (m.selection ? "the selection" : "") + "</td></tr>";
      addClass("match", m.start, m.end);
    });
    html += "</tbody></table>";
    if (r.total > shown.length) {
      html += '<p><button type="button" id="more-matches">Show ' + Math.min(10, r.total - shown.length) + " more</button> " +
        '<span class="muted">(' + shown.length + " of " + r.total + " shown)</span></p>";
    }
    box.innerHTML = html;
  }
  $("matches").addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("[data-match]");
    if (link) {
      e.preventDefault();
      goToMatch(ui.result.matches[+link.getAttribute("data-match")]);
      return;
    }
    if (e.target.id === "more-matches") {
      ui.top += 10;
      showMatches();
      drawTrace();
      var more = $("more-matches");
      if (more) more.focus();
    }
  });

  function goToMatch(m) {
    ui.current = m;
    clearClass("current");
    addClass("current", m.start, m.end);
    scrollToStep(m.start);
    tv.scrollIntoView({ block: "nearest" });
    centreTrace(m.start, m.end);
    drawTrace();
  }
  api.goToMatch = goToMatch;

  // -- traces of the selected units over the input ----------------------------------------------

  var traceCanvas = $("trace");
  var TRACE = { cell: 11, left: 40, top: 10, bottom: 34 };

  function centreTrace(a, b) {
    var width = ui.traceWidth;
    ui.traceStart = Math.max(0, Math.min(Math.max(0, T - width), Math.round((a + b) / 2 - width / 2)));
  }

  function traceUnits() {
    if (ui.result && ui.result.units.length) return ui.result.units.slice(0, 40);
    return [ui.colourUnit];
  }

  function drawTrace() {
    var cv = traceCanvas, dpr = window.devicePixelRatio || 1;
    var w = cv.clientWidth, h = cv.clientHeight;
    if (!w || !h) return;
    cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
    var ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    var cell = TRACE.cell, left = TRACE.left, top = TRACE.top, plotH = h - TRACE.top - TRACE.bottom;
    var width = Math.max(1, Math.floor((w - left - 8) / cell));
    ui.traceWidth = width;
    var start = Math.max(0, Math.min(ui.traceStart, Math.max(0, T - width)));
    ui.traceStart = start;
    var end = Math.min(T, start + width);
    var fg = cssVar("--fg"), muted = cssVar("--muted"), border = cssVar("--border");
    ctx.clearRect(0, 0, w, h);
    function y(v) { return top + (1 - (Math.max(-1.01, Math.min(1, v)) + 1) / 2) * plotH; }
    function x(s) { return left + (s - start) * cell; }
    function shade(c, d, colour, alpha) {
      var c0 = Math.max(c, start), d0 = Math.min(d, end);
      if (d0 <= c0) return;
      ctx.globalAlpha = alpha; ctx.fillStyle = colour;
      ctx.fillRect(x(c0), top, (d0 - c0) * cell, plotH);
      ctx.globalAlpha = 1;
    }
    if (ui.result) {
      ui.result.matches.slice(0, ui.top).forEach(function (m) { shade(m.start, m.end, cssVar("--match"), 0.14); });
    }
    if (ui.current) shade(ui.current.start, ui.current.end, cssVar("--match"), 0.22);
    if (ui.span) shade(ui.span[0], ui.span[1], cssVar("--sel"), 0.28);
    ctx.strokeStyle = border; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(left, y(0) + 0.5); ctx.lineTo(x(end), y(0) + 0.5); ctx.stroke();
    ctx.strokeRect(left + 0.5, top + 0.5, (end - start) * cell, plotH);
    var k = thresholdK(ui.threshold);
    ctx.strokeStyle = fg; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(left, y(k / 100) + 0.5); ctx.lineTo(x(end), y(k / 100) + 0.5); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = muted; ctx.font = "11px ui-monospace, Menlo, Consolas, monospace"; ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText("1", left - 4, y(1)); ctx.fillText("0", left - 4, y(0)); ctx.fillText("-1", left - 4, y(-1));
    ctx.fillStyle = fg; ctx.fillText("t", left - 4, y(k / 100) + (Math.abs(k) < 12 ? -9 : 0));
    var units = traceUnits(), negatives = 0;
    units.forEach(function (u, n) {
      // a negative side is drawn as -v: its ON steps (v <= -t) are then above the threshold line too
      var flip = u >= U ? -1 : 1, base = (u % U) * T;
      negatives += u >= U;
      ctx.strokeStyle = ui.result && ui.result.units.length ? LINE_COLOURS[n % LINE_COLOURS.length] : cssVar("--accent");
      ctx.lineWidth = 1.6;
      ctx.setLineDash(u >= U ? [2, 2] : []);
      ctx.beginPath();
      for (var s = start; s < end; s++) {
        var v = flip * (Q[base + s] + 0.5) / 100, px = x(s) + cell / 2;
        if (s === start) ctx.moveTo(px, y(v)); else ctx.lineTo(px, y(v));
      }
      ctx.stroke();
      ctx.setLineDash([]);
    });
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.font = "12px ui-monospace, Menlo, Consolas, monospace";
    for (var s = start; s < end; s++) {
      var inSel = ui.span && s >= ui.span[0] && s < ui.span[1];
      ctx.fillStyle = inSel ? fg : muted;
      if (IS_TEXT) ctx.fillText(shownChar(CHARS[s]), x(s) + cell / 2, h - TRACE.bottom + 10);
      if (!IS_TEXT || s % 10 === 0) {
        ctx.font = "10px ui-monospace, Menlo, Consolas, monospace"; ctx.fillStyle = muted;
        if (s % 10 === 0) ctx.fillText(String(s), x(s) + cell / 2, h - TRACE.bottom + 24);
        ctx.font = "12px ui-monospace, Menlo, Consolas, monospace";
      }
    }
    var what = ui.result && ui.result.units.length ? ui.result.units.length + " selected unit" + (ui.result.units.length === 1 ? "" : "s") +
      (ui.result.units.length > 40 ? " (first 40 drawn)" : "") : unitLong(ui.colourUnit) + " (no selection)";
    $("trace-range").textContent = (IS_TEXT ? "characters " : "steps ") + start + "\u2013" + (end - 1) + " of " + T + ": " +
      LABEL + " of " + what + "; dashed line: threshold " + (k / 100).toFixed(2) +
      (negatives ? "; dotted traces: negative sides (" + MINUS + "), drawn as " + MINUS + LABEL + " so that ON is above the dashed line" : "");
  }
  traceCanvas.addEventListener("mousemove", function (e) {
    var rect = traceCanvas.getBoundingClientRect();
    var x = e.clientX - rect.left - traceCanvas.clientLeft;
    var s = ui.traceStart + Math.floor((x - TRACE.left) / TRACE.cell);
    if (x < TRACE.left || s < 0 || s >= Math.min(T, ui.traceStart + ui.traceWidth)) { hideTip(); return; }
    var lines = [where(s)];
    var k = thresholdK(ui.threshold);
    traceUnits().slice(0, 12).forEach(function (u) {
      lines.push(unitName(u) + ": " + LABEL + " " + valueRange(Q[(u % U) * T + s]) + (isOn(u, s, k) ? " (ON)" : ""));
    });
    showTip(lines.join("\n"), e.clientX, e.clientY);
  });
  traceCanvas.addEventListener("mouseleave", hideTip);
  $("trace-left").addEventListener("click", function () {
    ui.traceStart = Math.max(0, ui.traceStart - Math.floor(ui.traceWidth / 2)); drawTrace();
  });
  $("trace-right").addEventListener("click", function () {
    ui.traceStart = Math.min(Math.max(0, T - ui.traceWidth), ui.traceStart + Math.floor(ui.traceWidth / 2)); drawTrace();
  });

  // -- controls --------------------------------------------------------------------------------

  // One line under the controls says what is wrong with a value the page refused (the control is
  // marked invalid and the page keeps its last good value).
  var problems = [];
  function showProblem() {
    var line = $("control-error");
    line.textContent = problems.length ? problems[problems.length - 1].message : "";
    line.hidden = !problems.length;
  }
  function setProblem(input, message) {
    problems = problems.filter(function (p) { return p.id !== input.id; });
    if (message !== null) problems.push({ id: input.id, message: message });
    if (input.id !== "sign") {
      input.classList.toggle("invalid", message !== null);
      if (message !== null) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    }
    showProblem();
  }
  function readNumber(input, check, name) {
    var v = Number(input.value);
    try {
      if (input.value.trim() === "") throw new RangeError(name + " is empty");
      check(v);
      setProblem(input, null);
      return v;
    } catch (err) {
      setProblem(input, err.message);
      return null;
    }
  }
  function checkThreshold(t) { checkSign(ui.sign, thresholdK(t)); }
  function setThreshold(t) {
    ui.threshold = Math.round(t * 100) / 100;
    $("threshold").value = ui.threshold.toFixed(2);
    $("threshold-range").value = Math.round(ui.threshold * 100);
    ["threshold", "threshold-range", "sign"].forEach(function (id) { setProblem($(id), null); });
    refresh();
  }
  function thresholdFromInput() {
    var v = readNumber($("threshold"), checkThreshold, "threshold");
    if (v !== null) setThreshold(v);
  }
  $("threshold").addEventListener("change", thresholdFromInput);
  $("threshold-range").addEventListener("input", function () {
    var t = Number(this.value) / 100;
    try { checkThreshold(t); } catch (err) { setProblem(this, err.message); return; }
    setThreshold(t);
  });
  $("sign").addEventListener("change", function () {
    var sign = this.value;
    try { checkSign(sign, thresholdK(ui.threshold)); } catch (err) {
      this.value = ui.sign;  // the page keeps its sign
      setProblem(this, err.message + ": raise the threshold first");
      return;
    }
    ui.sign = sign;
    setProblem(this, null);
    showSignColumns();
    var input = $("threshold");  // a value refused under the other sign may be good now
    if (input.classList.contains("invalid")) thresholdFromInput();
    else if ($("threshold-range").classList.contains("invalid")) setThreshold(ui.threshold);
    else refresh();
  });
  $("margin").addEventListener("change", function () {
    var v = readNumber(this, function (x) { wholeNumber(x, 0, "margin"); }, "margin");
    if (v !== null) { ui.margin = v; refresh(); }
  });
  $("min-length").addEventListener("change", function () {
    var v = readNumber(this, function (x) { wholeNumber(x, 1, "min length"); }, "min length");
    if (v !== null) { ui.minLength = v; refresh(); }
  });
  function selectFromInputs() {
    var a = readNumber($("sel-from"), function (x) {
      wholeNumber(x, 0, "from"); if (x >= T) throw new RangeError("from must be below " + T + " (got " + x + ")");
    }, "from");
    var b = readNumber($("sel-to"), function (x) {
      wholeNumber(x, 1, "to"); if (x > T) throw new RangeError("to must be " + T + " or less (got " + x + ")");
    }, "to");
    if (a === null || b === null) return;
    if (a >= b) { setProblem($("sel-to"), "to (excl.) must be greater than from (got " + a + " to " + b + ")"); return; }
    ui.anchor = a; ui.caret = b - 1;
    runSelection(a, b);
    scrollToStep(a);
  }
  $("sel-go").addEventListener("click", selectFromInputs);
  ["sel-from", "sel-to"].forEach(function (id) {
    $(id).addEventListener("keydown", function (e) { if (e.key === "Enter") selectFromInputs(); });
  });
  $("sel-clear").addEventListener("click", clearSelection);

  function parseUnit(text) {
    text = text.trim().replace(/[\u2212-]$/, "");  // a negative side's name: its unit
    var global = /^#?(\d+)$/.exec(text.trim());  // the list's "#" column
    if (global) return +global[1] < U ? +global[1] : -1;
    var parts = text.trim().toLowerCase().split(":");
    if (parts.length < 2 || parts.length > 3 || !/^\d+$/.test(parts[0]) || !/^\d+$/.test(parts[1])) return -1;
    var direction = parts.length === 3 ? ({ b: "backward", backward: "backward", f: "forward", forward: "forward" })[parts[2]] : "forward";
    if (!direction) return -1;
    return unitIndex(+parts[0], direction, +parts[1]);
  }
  function pickFromInput() {
    var input = $("unit-pick"), u = parseUnit(input.value);
    if (u < 0) {
      input.classList.add("invalid"); input.setAttribute("aria-invalid", "true");
      $("unit-picked").textContent = "no such unit: type LAYER:UNIT, like 1:37" + (BIDIRECTIONAL ? ", or 1:37:b for backward" : "") +
        ", or the list's number #N (0 to " + (U - 1) + ")";
      return;
    }
    input.classList.remove("invalid"); input.removeAttribute("aria-invalid");
    setUnit(u);
  }
  $("unit-go").addEventListener("click", pickFromInput);
  $("unit-pick").addEventListener("keydown", function (e) { if (e.key === "Enter") pickFromInput(); });

  // -- the unit table ------------------------------------------------------------------------------

  var onFraction = new Float64Array(U), onNegFraction = new Float64Array(U);
  // selectedSet[u]: 1 when unit u is selected, -1 when its negative side is (never both: t >= 0)
  var COLUMNS = [
    { key: "index", label: "#", value: function (u) { return u; } },
    { key: "name", label: "unit", value: function (u) { return u; }, text: function (u) { return unitName(u); } },
    { key: "mean", label: "mean", value: function (u) { return D.stats.mean[u]; } },
    { key: "std", label: "std", value: function (u) { return D.stats.std[u]; } },
    { key: "min", label: "min", value: function (u) { return D.stats.min[u]; } },
    { key: "max", label: "max", value: function (u) { return D.stats.max[u]; } },
    { key: "on", label: "ON %", value: function (u) { return onFraction[u]; }, text: function (u) { return (100 * onFraction[u]).toFixed(1); } },
    { key: "onneg", label: "ON" + MINUS + " %", cls: "neg", value: function (u) { return onNegFraction[u]; },
      text: function (u) { return (100 * onNegFraction[u]).toFixed(1); } },
    { key: "selected", label: "selected", value: function (u) { return selectedSet[u] ? 1 : 0; }, text: selectedText },
  ];
  var selectedSet = new Int8Array(U);
  function selectedText(u) { return selectedSet[u] > 0 ? "\u2713" : selectedSet[u] < 0 ? "\u2713" + MINUS : ""; }
  function columnIndex(key) { return COLUMNS.map(function (c) { return c.key; }).indexOf(key); }
  // The ON- % column (each unit's negative side) is there with sign both only.
  function showSignColumns() {
    var table = $("unit-table").querySelector("table");
    if (table) table.classList.toggle("both", ui.sign === "both");
    if (ui.sign !== "both" && ui.sortKey === "onneg") { ui.sortKey = "index"; ui.sortDesc = false; fillUnitTable(); }
  }
  var rowOf = [];

  function computeOn() {
    var k = thresholdK(ui.threshold), both = ui.sign === "both", low = -k - 1;
    for (var u = 0; u < U; u++) {
      var n = 0, m = 0, base = u * T, s;
      for (s = 0; s < T; s++) if (Q[base + s] >= k) n++;
      if (both) for (s = 0; s < T; s++) if (Q[base + s] <= low) m++;
      onFraction[u] = n / T;
      onNegFraction[u] = m / T;
    }
  }

  function buildUnitTable() {
    var html = '<table class="units" aria-label="Units: click a header to sort, a row to colour the input by its unit"><thead><tr>';
    COLUMNS.forEach(function (c) {
      html += '<th scope="col" aria-sort="none" data-key="' + c.key + '"' + (c.cls ? ' class="' + c.cls + '"' : "") +
        '><button type="button">' + esc(c.label) + "</button></th>";
    });
    html += "</tr></thead><tbody></tbody></table>";
    $("unit-table").innerHTML = html;
    var table = $("unit-table").querySelector("table");
    table.querySelector("thead").addEventListener("click", function (e) {
      var th = e.target.closest("th");
      if (!th) return;
      var key = th.getAttribute("data-key");
      ui.sortDesc = ui.sortKey === key ? !ui.sortDesc : key !== "index" && key !== "name";
      ui.sortKey = key;
      fillUnitTable();
    });
    var body = table.querySelector("tbody");
    var status = document.createElement("p");
    status.id = "unit-table-status";
    status.className = "muted";
    $("unit-table").parentNode.insertBefore(status, $("unit-table").nextSibling);
    $("unit-table").addEventListener("scroll", function () {
      var box = $("unit-table");
      if (tableShown < U && box.scrollTop + box.clientHeight > box.scrollHeight - 300) appendRows(tableShown + ROW_CHUNK);
    });
    body.addEventListener("click", function (e) {
      var tr = e.target.closest("tr");
      if (tr) { setUnit(+tr.getAttribute("data-unit")); tr.focus(); }
    });
    body.addEventListener("keydown", function (e) {
      var tr = e.target.closest("tr");
      if (!tr) return;
      var next = null;
      if (e.key === "End") appendRows(U);
      else if ((e.key === "ArrowDown" || e.key === "PageDown") && tableShown < U && !tr.nextElementSibling) appendRows(tableShown + ROW_CHUNK);
      else if (e.key === "PageDown" && tableShown < U) appendRows(tableShown + ROW_CHUNK);
      if (e.key === "ArrowDown") next = tr.nextElementSibling;
      else if (e.key === "ArrowUp") next = tr.previousElementSibling;
      else if (e.key === "Home") next = body.firstElementChild;
      else if (e.key === "End") next = body.lastElementChild;
      else if (e.key === "PageDown" || e.key === "PageUp") {
        next = tr;
        for (var n = 0; n < 10; n++) {
          var step = e.key === "PageDown" ? next.nextElementSibling : next.previousElementSibling;
          if (step) next = step;
        }
      } else if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        setUnit(+tr.getAttribute("data-unit"));
        return;
      }
      if (next) {
        e.preventDefault();
        tr.tabIndex = -1; next.tabIndex = 0; next.focus();
      }
    });
    fillUnitTable();
    showSignColumns();
  }

  // Rows are laid out in chunks as the list scrolls (or the keyboard moves past the last one):
  // a model of thousands of units would otherwise spend seconds laying out its table.
  var ROW_CHUNK = 400;
  var tableOrder = [], tableShown = 0;

  function rowHtml(u) {
    var cells = COLUMNS.map(function (c) {
      var text = c.text ? c.text(u) : c.key === "index" ? String(u) : fmt(c.value(u), 4);
      return "<td" + (c.key === "name" ? ' class="name"' : c.cls ? ' class="' + c.cls + '"' : "") + ">" + esc(text) + "</td>";
    }).join("");
    return '<tr data-unit="' + u + '" tabindex="-1" aria-label="' + esc(unitLong(u)) + '">' + cells + "</tr>";
  }

  function tableBody() { return $("unit-table").querySelector("tbody"); }

  function appendRows(upTo) {
    upTo = Math.min(U, upTo);
    if (upTo <= tableShown) return;
    var body = tableBody();
    body.insertAdjacentHTML("beforeend", tableOrder.slice(tableShown, upTo).map(rowHtml).join(""));
    var rows = body.children;
    for (var n = tableShown; n < upTo; n++) rowOf[+rows[n].getAttribute("data-unit")] = rows[n];
    tableShown = upTo;
    $("unit-table-status").textContent = tableShown < U ? tableShown + " of " + U + " rows laid out: scroll (or press End) for more" : "";
    if (!body.querySelector('tr[tabindex="0"]')) body.firstElementChild.tabIndex = 0;
  }

  function fillUnitTable() {
    var order = [];
    for (var u = 0; u < U; u++) order.push(u);
    var col = COLUMNS.filter(function (c) { return c.key === ui.sortKey; })[0];
    var sign = ui.sortDesc ? -1 : 1;
    order.sort(function (a, b) {
      var x = col.value(a), y = col.value(b);
      x = x === null || x === undefined || isNaN(x) ? -Infinity : x;
      y = y === null || y === undefined || isNaN(y) ? -Infinity : y;
      return x === y ? a - b : (x < y ? -sign : sign);
    });
    tableOrder = order;
    tableShown = 0;
    rowOf = [];
    pickedRow = null;
    tableBody().innerHTML = "";
    $("unit-table").scrollTop = 0;  // a new order starts at its top
    appendRows(ROW_CHUNK);
    $("unit-table").querySelectorAll("th").forEach(function (th) {
      var key = th.getAttribute("data-key");
      th.setAttribute("aria-sort", key === ui.sortKey ? (ui.sortDesc ? "descending" : "ascending") : "none");
      th.querySelector("button").textContent = COLUMNS.filter(function (c) { return c.key === key; })[0].label +
        (key === ui.sortKey ? (ui.sortDesc ? " \u25bc" : " \u25b2") : "");
    });
    markPickedRow(false);
  }

  var pickedRow = null;
  function markPickedRow(reveal) {
    if (pickedRow) pickedRow.classList.remove("picked");
    if (reveal && !rowOf[ui.colourUnit]) appendRows(tableOrder.indexOf(ui.colourUnit) + 1);
    pickedRow = rowOf[ui.colourUnit] || null;
    if (!pickedRow) return;
    pickedRow.classList.add("picked");
    tableBody().querySelectorAll('tr[tabindex="0"]').forEach(function (tr) { if (tr !== pickedRow) tr.tabIndex = -1; });
    pickedRow.tabIndex = 0;
  }

  function updateUnitTable() {
    computeOn();
    selectedSet = new Int8Array(U);
    if (ui.result) ui.result.units.forEach(function (u) { selectedSet[u % U] = u < U ? 1 : -1; });
    if (ui.sortKey === "on" || ui.sortKey === "onneg" || ui.sortKey === "selected") { fillUnitTable(); return; }
    var onColumn = columnIndex("on"), negColumn = columnIndex("onneg"), selColumn = columnIndex("selected");
    for (var u = 0; u < U; u++) {
      var tr = rowOf[u];
      if (!tr) continue;
      tr.children[onColumn].textContent = (100 * onFraction[u]).toFixed(1);
      tr.children[negColumn].textContent = (100 * onNegFraction[u]).toFixed(1);
      tr.children[selColumn].textContent = selectedText(u);
    }
  }

  // -- heatmaps ----------------------------------------------------------------------------------

  var HM = D.heatmap;
  var GATE_NAMES = { i: "input gate i", f: "forget gate f", g: "cell candidate g", o: "output gate o", c: "cell state c" };
  var panels = [];

  function panelScale(p) {
    return { lo: p.scale.low, hi: p.scale.high, div: p.scale.low < 0, tanh: p.scale.transform === "tanh" };
  }

  function buildHeatmaps() {
    var box = $("heatmaps"), groups = {};
    var html = "";
    HM.panels.forEach(function (p, n) {
      var key = p.layer + ":" + p.direction;
      if (!groups[key]) {
        if (n) html += "</details>";
        groups[key] = true;
        html += '<details class="heatgroup" open><summary>layer ' + p.layer + (BIDIRECTIONAL ? " " + p.direction : "") + "</summary>";
      }
      var s = panelScale(p);
      html += '<div class="heatpanel"><div class="caption"><span>' + esc(GATE_NAMES[p.quantity]) + ": " + p.units + " units \u00d7 " +
        HM.steps + " steps" + (HM.steps_per_column > 1 ? " (" + p.columns + " columns, " + HM.steps_per_column + " steps each)" : "") +
        '</span><span class="muted">values ' + fmt(p.low) + " .. " + fmt(p.high) + "; colours " + fmt(s.lo) + " .. " + fmt(s.hi) +
        (s.tanh ? " of tanh(c)" : "") +
        '</span></div><canvas class="map" data-panel="' + n + '" width="' + p.columns + '" height="' + p.rows +
        '" aria-label="heatmap of ' + esc(GATE_NAMES[p.quantity]) + ", layer " + p.layer + " " + p.direction + '"></canvas></div>';
    });
    html += "</details>";
    box.innerHTML = html;
    HM.panels.forEach(function (p, n) {
      var codes = new Uint16Array(decode(p.data).buffer);
      var cv = box.querySelector('canvas[data-panel="' + n + '"]');
      cv.style.height = Math.max(48, Math.min(192, p.rows)) + "px";
      panels.push({ p: p, codes: codes, canvas: cv });
    });
    drawHeatmaps();
    box.addEventListener("mousemove", heatHover);
    box.addEventListener("mouseleave", hideTip);
    box.addEventListener("click", heatClick);
  }

  function drawHeatmaps() {
    panels.forEach(function (P) {
      var p = P.p, s = panelScale(p), ctx = P.canvas.getContext("2d");
      var img = ctx.createImageData(p.columns, p.rows), px = img.data;
      var cache = {};
      for (var j = 0; j < P.codes.length; j++) {
        var code = P.codes[j], c = cache[code];
        if (!c) {
          if (code === 65535) c = [128, 128, 128];
          else {
            var v = p.low + (code / 65534) * (p.high - p.low);
            if (s.tanh) v = Math.tanh(v);
            var pos = (v - s.lo) / (s.hi - s.lo);
            c = s.div ? diverging(pos) : sequential(pos);
          }
          cache[code] = c;
        }
        px[4 * j] = c[0]; px[4 * j + 1] = c[1]; px[4 * j + 2] = c[2]; px[4 * j + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
    });
  }

  function heatCell(e) {
    var cv = e.target;
    if (!cv.getAttribute || cv.getAttribute("data-panel") === null) return null;
    var P = panels[+cv.getAttribute("data-panel")], p = P.p, rect = cv.getBoundingClientRect();
    // the drawing fills the canvas inside its border
    var x = (e.clientX - rect.left - cv.clientLeft) / cv.clientWidth, y = (e.clientY - rect.top - cv.clientTop) / cv.clientHeight;
    var col = Math.min(p.columns - 1, Math.max(0, Math.floor(x * p.columns)));
    var row = Math.min(p.rows - 1, Math.max(0, Math.floor(y * p.rows)));
    return { P: P, p: p, col: col, row: row };
  }

  function heatHover(e) {
    var h = heatCell(e);
    if (!h) { hideTip(); return; }
    var p = h.p, k = HM.steps_per_column, uk = HM.units_per_row;
    var s0 = h.col * k, s1 = Math.min(HM.steps, s0 + k), u0 = h.row * uk, u1 = Math.min(p.units, u0 + uk);
    var code = h.P.codes[h.row * p.columns + h.col];
    var value = code === 65535 ? "no value" : fmt(p.low + (code / 65534) * (p.high - p.low), 4);
    var lines = ["layer " + p.layer + (BIDIRECTIONAL ? " " + p.direction : "") + ", " + GATE_NAMES[p.quantity],
      (u1 - u0 > 1 ? "units " + u0 + "\u2013" + (u1 - 1) : "unit " + u0) + ", " +
      (s1 - s0 > 1 ? "steps " + s0 + "\u2013" + (s1 - 1) : "step " + s0) + (s1 - s0 > 1 || u1 - u0 > 1 ? " (mean)" : "") + ": " + value];
    if (IS_TEXT && s0 < T) lines.push(JSON.stringify(CHARS.slice(s0, Math.min(s1, T, s0 + 30)).join("")));
    showTip(lines.join("\n"), e.clientX, e.clientY);
  }

  function heatClick(e) {
    var h = heatCell(e);
    if (!h) return;
    var p = h.p, u = unitIndex(p.layer, p.direction, h.row * HM.units_per_row), s = h.col * HM.steps_per_column;
    if (u >= 0) setUnit(u, true);
    if (s < T) { ui.caret = s; ui.anchor = s; scrollToStep(s); centreTrace(s, s + 1); }
    drawTrace();
  }

  // -- saturation scatter ----------------------------------------------------------------------------

  var SAT = D.saturation;
  var scatterPoints = {};

  function buildScatter() {
    var th = SAT.thresholds;
    $("scatter-legend").innerHTML = SAT.layers.map(function (L, n) {
      return '<span><span class="chip"><span class="dot" style="background:' + LAYER_COLOURS[n % LAYER_COLOURS.length] +
        '"></span>layer ' + L.layer + (BIDIRECTIONAL ? " " + L.direction : "") + "</span></span>";
    }).join("");
    var html = "";
    ["i", "f", "g", "o"].forEach(function (gate) {
      var lo = gate === "g" ? th.tanh_low : th.low, hi = gate === "g" ? th.tanh_high : th.high;
      html += '<figure><canvas data-gate="' + gate + '" role="img" aria-label="saturation of ' + esc(GATE_NAMES[gate]) +
        '"></canvas><figcaption>' + esc(GATE_NAMES[gate]) + ": x below " + lo + ", y above " + hi + "</figcaption></figure>";
    });
    $("scatters").innerHTML = SAT.layers.length ? html : "<p>No per-unit statistics.</p>";
    drawScatter();
    $("scatters").addEventListener("mousemove", scatterHover);
    $("scatters").addEventListener("mouseleave", hideTip);
    $("scatters").addEventListener("click", function (e) {
      var hit = scatterHit(e);
      if (!hit) return;
      var u = unitIndex(hit.layer, hit.direction, hit.unit);
      if (u >= 0) setUnit(u);
    });
  }

  var SC = { size: 270, pad: 38 };
  function drawScatter() {
    var fg = cssVar("--fg"), muted = cssVar("--muted"), border = cssVar("--border");
    document.querySelectorAll("#scatters canvas").forEach(function (cv) {
      var gate = cv.getAttribute("data-gate"), dpr = window.devicePixelRatio || 1, size = SC.size, pad = SC.pad;
      cv.width = size * dpr; cv.height = size * dpr;
      var ctx = cv.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, size, size);
      var span = size - pad - 10;
      function X(v) { return pad + v * span; }
      function Y(v) { return 10 + (1 - v) * span; }
      ctx.strokeStyle = border; ctx.strokeRect(X(0) + 0.5, Y(1) + 0.5, span, span);
      ctx.strokeStyle = muted; ctx.setLineDash([4, 3]); ctx.beginPath(); ctx.moveTo(X(0), Y(1)); ctx.lineTo(X(1), Y(0)); ctx.stroke(); ctx.setLineDash([]);
      ctx.fillStyle = muted; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "top";
      ctx.fillText("0", X(0), Y(0) + 3); ctx.fillText("1", X(1), Y(0) + 3);
      ctx.fillStyle = fg; ctx.fillText("left-saturated fraction", X(0.5), Y(0) + 14);
      ctx.save(); ctx.translate(11, Y(0.5)); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "middle";
      ctx.fillText("right-saturated fraction", 0, 0); ctx.restore();
      ctx.fillStyle = muted; ctx.textAlign = "right"; ctx.textBaseline = "middle";
      ctx.fillText("1", X(0) - 4, Y(1)); ctx.fillText("0", X(0) - 4, Y(0));
      var points = [];
      SAT.layers.forEach(function (L, n) {
        var g = L.gates[gate];
        ctx.fillStyle = LAYER_COLOURS[n % LAYER_COLOURS.length];
        ctx.globalAlpha = 0.7;
        for (var u = 0; u < g.left.length; u++) {
          if (g.left[u] === null || g.right[u] === null) continue;
          var px = X(g.left[u]), py = Y(g.right[u]);
          ctx.beginPath(); ctx.arc(px, py, 2.6, 0, 2 * Math.PI); ctx.fill();
          points.push({ x: px, y: py, layer: L.layer, direction: L.direction, unit: u, left: g.left[u], right: g.right[u] });
        }
        ctx.globalAlpha = 1;
      });
      scatterPoints[gate] = points;
    });
  }

  function scatterHit(e) {
    var cv = e.target;
    if (!cv.getAttribute || !cv.getAttribute("data-gate")) return null;
    var rect = cv.getBoundingClientRect();
    var x = (e.clientX - rect.left - cv.clientLeft) * SC.size / cv.clientWidth, y = (e.clientY - rect.top - cv.clientTop) * SC.size / cv.clientHeight;
    var best = null, bestD = 64;
    (scatterPoints[cv.getAttribute("data-gate")] || []).forEach(function (pt) {
      var d = (pt.x - x) * (pt.x - x) + (pt.y - y) * (pt.y - y);
      if (d < bestD) { bestD = d; best = pt; }
    });
    if (best) best.gate = cv.getAttribute("data-gate");
    return best;
  }

  function scatterHover(e) {
    var hit = scatterHit(e);
    if (!hit) { hideTip(); return; }
    showTip("layer " + hit.layer + (BIDIRECTIONAL ? " " + hit.direction : "") + " unit " + hit.unit + ", " + GATE_NAMES[hit.gate] +
      "\nleft-saturated " + pct(hit.left) + ", right-saturated " + pct(hit.right) + "\n(click to colour the input by this unit)", e.clientX, e.clientY);
  }

  // -- help texts --------------------------------------------------------------------------------------

  function helpTexts() {
    var what = IS_TEXT ? "characters" : "steps";
    $("from-label").textContent = IS_TEXT ? "from char" : "from step";
    $("match-help").textContent = "Drag over the " + what + " to select a span (or type from/to and press Select; with the " +
      "keyboard, focus the input view, move with the arrow keys, extend with Shift+arrows and press Enter). A unit is " +
      "selected when its " + LABEL + " is above the threshold at every selected step and below it within the margin on " +
      "each side; the matches are the runs where at least half of the selected units are above it. Values count in " +
      "hundredths: a unit is ON at a step when q \u2265 100 t, with q = ceil(100 v) \u2212 1. The sign control: positive " +
      "(as LSTMVis) is the above; both (for a threshold of 0 or more) also makes each unit's negative side a unit of its own, " +
      "named like 1:37\u2212 and ON where q \u2264 \u2212100 t \u2212 1 (its value is at or below \u2212t), since a trained unit's " +
      "sign is arbitrary." +
      (D.input.shown < D.input.steps ? " Only the first " + D.input.shown + " of " + D.input.steps + " steps are here." : "") +
      (IS_TEXT ? "" : " The input is not text: each cell is one step of sequence 0 (rows of " + STEP_ROW + ").");
    $("units-help").textContent = "Every unit of every layer and direction: its " + LABEL + " over the " + T +
      " steps shown (mean, std, min, max of the float64 values; ON % at the current threshold; with sign both, ON\u2212 % " +
      "of its negative side, below \u2212t; \u2713 when selected, \u2713\u2212 when its negative side is). " +
      "Click a header to sort; click a row, or move with the arrow keys and press Enter, to colour the input by that unit.";
    $("heatmap-help").textContent = "Sequence 0, every layer and direction: the gates i, f, o (0 to 1), the cell candidate g " +
      "(\u22121 to 1) and the cell state c (coloured by tanh(c), \u22121 to 1; hovering shows c), units (rows) by steps " +
      "(columns). Hover for values; click " +
      "to colour the input by that unit and go to that step." + (HM.steps_per_column > 1 ? " Subsampled: each column is the mean of " +
      HM.steps_per_column + " steps (" + HM.steps + " steps as " + HM.columns + " columns)." : "") +
      (HM.units_per_row > 1 ? " Each row is the mean of " + HM.units_per_row + " units." : "");
    var th = SAT.thresholds;
    $("scatter-help").textContent = "Each dot is one unit: the fraction of (step, sequence) pairs at which the gate was " +
      "left-saturated (below " + th.low + "; g below " + th.tanh_low + ") against right-saturated (above " + th.high + "; g above " +
      th.tanh_high + "), over every sequence of the verified gates run (Karpathy, Johnson and Fei-Fei 2015, Fig. 3). Dots on " +
      "the dashed line are always saturated. Click a dot to colour the input by that unit.";
  }

  // -- start ------------------------------------------------------------------------------------------

  function redrawColours() {
    setPalette();
    qPalette();
    colourInput();
    drawTrace();
    drawHeatmaps();
    drawScatter();
  }

  function init() {
    var times = api.timings = { start: performance.now() };
    function mark(name) { times[name] = performance.now(); }
    setPalette();
    qPalette();
    drawHeader();
    helpTexts();
    buildInput();
    mark("input");
    buildUnitTable();
    mark("units");
    $("threshold").value = ui.threshold.toFixed(2);
    $("threshold-range").value = Math.round(ui.threshold * 100);
    $("margin").value = ui.margin;
    $("sign").value = ui.sign;
    $("min-length").value = ui.minLength;
    $("sel-from").max = T - 1;
    $("sel-to").max = T;
    colourInput();
    computeOn();
    updateUnitTable();
    mark("colour");
    buildHeatmaps();
    mark("heatmaps");
    buildScatter();
    mark("scatter");
    drawTrace();
    mark("trace");
    if (window.matchMedia) {
      window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function (e) {
        dark = e.matches;
        redrawColours();
      });
    }
    var pending = false;
    window.addEventListener("resize", function () {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () { pending = false; drawTrace(); });
    });
  }

  api.select = select;
  api.runSelection = function (a, b) { runSelection(a, b); return api.last; };
  api.setUnit = setUnit;
  api.units = UNITS;
  api.unitName = unitName;
  api.steps = T;
  init();
  api.ready = true;
  api.readyAt = performance.now();
})();
