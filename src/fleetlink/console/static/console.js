// fleetlink console: filter any table as you type (re-applied after each live refresh), "/" to filter.
(function () {
  "use strict";
  function apply(input) {
    var table = document.querySelector(input.dataset.filter);
    if (!table) { return; }
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    table.querySelectorAll("tbody tr").forEach(function (row) {
      var text = row.textContent.toLowerCase();
      row.hidden = !words.every(function (w) { return text.indexOf(w) !== -1; });
    });
  }
  function applyAll() { document.querySelectorAll("input[data-filter]").forEach(apply); }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("input[data-filter]")) { apply(event.target); }
  });
  document.addEventListener("htmx:afterSwap", applyAll);
  document.addEventListener("keydown", function (event) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (event.key === "/" && !typing) {
      var first = document.querySelector("input[data-filter]");
      if (first) { event.preventDefault(); first.focus(); }
    }
  });
  // A live region is not refreshed while the operator is typing into a form inside the page.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var active = document.activeElement;
    if (active && active.form && event.detail.elt.id === "live" && !active.matches("input[data-filter]")) {
      event.preventDefault();
    }
  });
}());
