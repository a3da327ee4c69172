/* wf dashboard, the instances page: refresh the live region every 2 s while the tab is visible,
   keep the checked rows checked across refreshes, "select all", and check the trigger form's
   JSON before it is sent. (The refresh is an event of ours, not an hx-trigger filter, so no
   expression is evaluated: a strict CSP stays possible.) */
(function () {
  "use strict";
  var ROW_BOX = 'input[data-testid="select-row"]';
  var ALL_BOX = 'input[data-testid="select-all"]';
  var selected = new Set();

  function live() { return document.querySelector('[data-testid="instances-live"]'); }
  function boxes() { return Array.prototype.slice.call(document.querySelectorAll(ROW_BOX)); }

  function sync() {
    var all = document.querySelector(ALL_BOX);
    var shown = boxes();
    var checked = 0;
    shown.forEach(function (box) {
      box.checked = selected.has(box.value);
      if (box.checked) checked += 1;
    });
    if (all) {
      all.checked = shown.length > 0 && checked === shown.length;
      all.indeterminate = checked > 0 && checked < shown.length;
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches(ROW_BOX)) {
      if (target.checked) selected.add(target.value); else selected.delete(target.value);
      sync();
    } else if (target.matches(ALL_BOX)) {
      boxes().forEach(function (box) {
        if (target.checked) selected.add(box.value); else selected.delete(box.value);
      });
      sync();
    }
  });
  document.addEventListener("htmx:afterSwap", sync);
  document.addEventListener("DOMContentLoaded", function () {
    boxes().forEach(function (box) { if (box.checked) selected.add(box.value); }); // back/forward cache
    sync();
  });

  setInterval(function () {
    var region = live();
    if (region && document.visibilityState === "visible" && window.htmx) {
      window.htmx.trigger(region, "wf-refresh");
    }
  }, 2000);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches('form[data-testid="trigger-form"]')) return;
    var area = form.querySelector('[data-testid="trigger-params"]');
    var out = form.querySelector('[data-testid="trigger-error"]');
    var text = area.value.trim();
    try {
      if (text) JSON.parse(text);
      area.removeAttribute("aria-invalid");
      out.hidden = true;
      out.textContent = "";
    } catch (err) {
      event.preventDefault();
      out.textContent = "params are not valid JSON: " + err.message;
      out.hidden = false;
      area.setAttribute("aria-invalid", "true");
      area.focus();
    }
  });
})();
