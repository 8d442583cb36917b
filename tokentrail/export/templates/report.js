/* tokentrail report: sort tables by a click on a header, filter rows with a text box.
   Static code, no data: it reads only the page's own table cells (textContent) and the URL
   fragment (#filter=TEXT pre-fills the findings filter). No network, no innerHTML. */
(function () {
  "use strict";

  function bodyRows(table) {
    return Array.prototype.slice.call(table.tBodies[0].rows);
  }

  function applyFilter(table, query) {
    var terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = bodyRows(table);
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var match = terms.every(function (t) { return text.indexOf(t) !== -1; });
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    var counter = document.getElementById(table.id + "-count");
    if (counter) {
      counter.textContent = terms.length ? shown + " of " + rows.length + " rows" : rows.length + " rows";
    }
  }

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var key = cell.getAttribute("data-sort");
    return key === null ? cell.textContent.trim() : key;
  }

  function compare(a, b) {
    var x = Number(a), y = Number(b);
    if (a !== "" && b !== "" && isFinite(x) && isFinite(y)) { return x - y; }
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function sortBy(table, th) {
    var index = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = bodyRows(table);
    rows.sort(function (r1, r2) {
      var c = compare(cellKey(r1, index), cellKey(r2, index));
      return ascending ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(table, th); }
      });
    });
  });

  Array.prototype.forEach.call(document.querySelectorAll("input[data-filter-for]"), function (input) {
    var table = document.getElementById(input.getAttribute("data-filter-for"));
    if (!table) { return; }
    input.addEventListener("input", function () { applyFilter(table, input.value); });
    if (input.value) { applyFilter(table, input.value); }
  });

  var m = /(?:^#|&)filter=([^&]*)/.exec(window.location.hash);
  var input = document.getElementById("findings-filter");
  var findings = document.getElementById("findings-table");
  if (m && input && findings) {
    var query = m[1].replace(/\+/g, " ");
    try { query = decodeURIComponent(query); } catch (e) { /* keep it as written */ }
    input.value = query;
    applyFilter(findings, query);
  }
  document.documentElement.setAttribute("data-tt-ready", "1");
}());
