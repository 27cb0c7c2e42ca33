// databazaar web pages: small progressive enhancements; every page works without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Phone menu: a real <button> with aria-expanded toggles the main navigation.
  var menu = document.querySelector("button.menu");
  var nav = document.getElementById("site-nav");
  if (menu && nav) {
    var narrow = window.matchMedia("(max-width: 40rem)");
    var sync = function () {
      if (narrow.matches) {
        menu.hidden = false;
        nav.setAttribute("data-collapsed", menu.getAttribute("aria-expanded") === "true" ? "false" : "true");
      } else {
        menu.hidden = true;
        nav.removeAttribute("data-collapsed");
      }
    };
    menu.addEventListener("click", function () {
      var open = menu.getAttribute("aria-expanded") === "true";
      menu.setAttribute("aria-expanded", open ? "false" : "true");
      sync();
      if (!open) {
        var first = nav.querySelector("a, button");
        if (first) { first.focus(); }
      }
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.getAttribute("aria-expanded") === "true") {
        menu.setAttribute("aria-expanded", "false");
        sync();
        menu.focus();
      }
    });
    if (narrow.addEventListener) { narrow.addEventListener("change", sync); }
    sync();
  }

  // Forms marked data-once disable their button after the first submit, so a double
  // click sends one request (the server also makes a replayed purchase a no-op).
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("button[type=submit]").forEach(function (b) {
        window.setTimeout(function () { b.disabled = true; }, 0);
      });
    });
  });
  // Pricing forms: show the chosen mechanism's fields only, and check each field as the
  // seller types, with the message next to the field (the server checks again).
  var pricing = document.querySelector("form.pricing-form");
  if (pricing) {
    var showMechanism = function () {
      var chosen = pricing.querySelector("input[name=mechanism]:checked");
      pricing.querySelectorAll("fieldset.mech").forEach(function (fs) {
        fs.hidden = !chosen || fs.getAttribute("data-mechanism") !== chosen.value;
      });
      var column = pricing.querySelector("select[name=query_column]");
      pricing.querySelectorAll(".query-prices").forEach(function (box) {
        box.hidden = !column || box.getAttribute("data-column") !== column.value;
      });
    };
    pricing.addEventListener("change", showMechanism);
    showMechanism();
  }
  var MONEY = /^\s*\$?\s*\d{1,3}(,?\d{3})*(\.\d{1,2})?\s*(USD)?\s*$/i;
  var checks = {
    money: function (v) {
      if (!MONEY.test(v)) { return "enter an amount in USD, e.g. 12.50"; }
      return "";
    },
    percent: function (v) {
      var n = Number(v.replace("%", "").trim());
      if (!isFinite(n) || n <= 0 || n > 100) { return "enter a percent from 0.01 to 100"; }
      if (Math.round(n * 100) !== n * 100) { return "at most two decimals"; }
      return "";
    },
    positive: function (v) {
      var n = Number(v.trim());
      return isFinite(n) && n > 0 ? "" : "a number above 0, e.g. 0.1";
    },
    count: function (v) {
      return /^\s*\d+\s*$/.test(v) && Number(v) >= 1 && Number(v) <= 1000 ? "" : "a whole number from 1 to 1000";
    }
  };
  document.querySelectorAll("input[data-check]").forEach(function (input) {
    var box = document.getElementById("msg-" + input.name.replace(/:/g, "-"));
    var run = function () {
      var v = input.value;
      var msg = "";
      if (v.trim() === "") {
        msg = input.hasAttribute("data-required") ? "required" : "";
      } else {
        msg = checks[input.getAttribute("data-check")](v);
      }
      if (msg) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
      if (box) { box.textContent = msg; }
    };
    input.addEventListener("input", run);
    input.addEventListener("blur", run);
  });
})();
