/* Progressive enhancement for the outcome return form, doing what GOV.UK Frontend's Checkboxes,
   Radios and ErrorSummary components do, in a few lines instead of the whole library (not
   vendored here). Without JavaScript every revealed question is simply shown and the "No action"
   box is checked by the server's rules instead: the form works the same.

   - Conditional reveals: an input with data-aria-controls shows the block it names only while it
     is checked (aria-controls and aria-expanded tell assistive technology).
   - Exclusive box: ticking "No action" unticks the others, and ticking another unticks it.
   - Error summary: it takes the focus; its links move the focus to the field and bring the
     field's label or legend into view, as GOV.UK does. */
(function () {
  "use strict";

  document.body.classList.add("js-enabled", "govuk-frontend-supported");

  var controllers = [];
  document.querySelectorAll("input[data-aria-controls]").forEach(function (input) {
    var targetId = input.getAttribute("data-aria-controls");
    if (!document.getElementById(targetId)) {
      return;
    }
    input.setAttribute("aria-controls", targetId);
    input.removeAttribute("data-aria-controls");
    controllers.push(input);
  });

  function syncReveals() {
    controllers.forEach(function (input) {
      var target = document.getElementById(input.getAttribute("aria-controls"));
      var kind = input.type === "radio" ? "radios" : "checkboxes";
      input.setAttribute("aria-expanded", input.checked ? "true" : "false");
      target.classList.toggle("govuk-" + kind + "__conditional--hidden", !input.checked);
    });
  }

  function othersInGroup(input) {
    var group = input.form ? input.form.elements.namedItem(input.name) : null;
    var inputs = group && group.length !== undefined ? Array.prototype.slice.call(group) : [];
    return inputs.filter(function (other) {
      return other !== input && other.type === "checkbox";
    });
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.type === "checkbox" && input.checked) {
      var exclusive = input.getAttribute("data-behaviour") === "exclusive";
      othersInGroup(input).forEach(function (other) {
        if (exclusive || other.getAttribute("data-behaviour") === "exclusive") {
          other.checked = false;
        }
      });
    }
    syncReveals();
  });
  // Back and forward may restore the boxes as they were left.
  window.addEventListener("pageshow", syncReveals);
  syncReveals();

  var summary = document.querySelector(".govuk-error-summary");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      var input = link ? document.getElementById(link.getAttribute("href").slice(1)) : null;
      if (!input) {
        return;
      }
      event.preventDefault();
      var fieldset = input.closest("fieldset");
      var legend = fieldset ? fieldset.querySelector("legend") : null;
      var label = legend || document.querySelector("label[for='" + input.id + "']");
      (label || input).scrollIntoView();
      input.focus({ preventScroll: true });
    });
  }
})();
