/* wf dashboard keyboard shortcuts: "/" search, j/k move a highlighted row, Enter opens it,
   "?" toggles the help dialog, Escape closes it. Never while typing in a field. */
(function () {
  "use strict";
  var ROWS = '[data-testid="instance-row"], [data-testid="workflow-row"]';
  var remembered = null; // the highlighted row's id, kept across live refreshes

  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]');
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll(ROWS)); }
  function keyOf(row) { return row.getAttribute("data-instance") || row.getAttribute("data-workflow"); }
  function current() { return document.querySelector('tr[aria-selected="true"]'); }

  function highlight(row) {
    rows().forEach(function (r) { r.removeAttribute("aria-selected"); });
    if (!row) { remembered = null; return; }
    row.setAttribute("aria-selected", "true");
    remembered = keyOf(row);
    row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var at = all.indexOf(current());
    var next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(Math.max(at + step, 0), all.length - 1);
    highlight(all[next]);
  }

  function help() { return document.querySelector('dialog[data-testid="shortcuts-help"]'); }
  function toggleHelp() {
    var dialog = help();
    if (!dialog) return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var dialog = help();
    if (event.key === "Escape" && dialog && dialog.open) { dialog.close(); event.preventDefault(); return; }
    if (typing(event.target)) return;
    if (event.key === "?") { toggleHelp(); event.preventDefault(); return; }
    if (dialog && dialog.open) return;
    if (event.key === "/") {
      var search = document.querySelector('[data-testid="search-input"]');
      if (search) { search.focus(); search.select(); event.preventDefault(); }
    } else if (event.key === "j") {
      move(1); event.preventDefault();
    } else if (event.key === "k") {
      move(-1); event.preventDefault();
    } else if (event.key === "Enter") {
      if (event.target.closest && event.target.closest("a, button, summary")) return; // their own Enter
      var row = current();
      var link = row && row.querySelector("a[href]");
      if (link) { event.preventDefault(); window.location.assign(link.href); }
    }
  });

  // A live refresh replaces the rows: highlight the same one again.
  document.addEventListener("htmx:afterSettle", function () {
    if (remembered === null) return;
    var again = rows().filter(function (r) { return keyOf(r) === remembered; })[0];
    if (again) again.setAttribute("aria-selected", "true"); else remembered = null;
  });
})();
