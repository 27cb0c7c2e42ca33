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
})();
