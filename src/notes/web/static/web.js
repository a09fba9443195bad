// Progressive enhancement of the notes pages; every page works without this script.
// - The completed toggle saves in place instead of reloading the page.
// - The search box filters the list as you type.
"use strict";

(function () {
  function replaceResults(html) {
    var page = new DOMParser().parseFromString(html, "text/html");
    var fresh = page.getElementById("results");
    var current = document.getElementById("results");
    if (fresh && current) current.innerHTML = fresh.innerHTML;
  }

  // One click on the round button toggles "completed"; the server answers with JSON.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-toggle")) return;
    event.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "Accept": "application/json" },
      credentials: "same-origin",
    }).then(function (response) {
      if (!response.ok) throw new Error("toggle failed: " + response.status);
      return response.json();
    }).then(function (note) {
      var item = form.closest(".note");
      item.classList.toggle("done", note.completed);
      button.setAttribute("aria-pressed", note.completed ? "true" : "false");
      button.title = note.completed ? "Mark as not completed" : "Mark as completed";
      button.querySelector("span").textContent = note.completed ? "\u2713" : "";
      form.querySelector("input[name=completed]").value = note.completed ? "0" : "1";
    }).catch(function () {
      form.submit();  // fall back to the plain form post
    }).finally(function () {
      button.disabled = false;
    });
  });

  // Search as you type: fetch the list page for the form's values and swap the results in.
  var form = document.querySelector("form[data-live-search]");
  if (!form) return;
  var timer = null;
  var latest = 0;
  function refresh() {
    // The same URL the server links to: no empty fields, no "all".
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (value && !(name === "status" && value === "all")) params.append(name, value);
    });
    var query = params.toString();
    var url = form.action.split("?")[0] + (query ? "?" + query : "");
    var ticket = ++latest;
    fetch(url, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        if (ticket !== latest) return;  // a later keystroke has already asked again
        replaceResults(html);
        history.replaceState(null, "", url);
      });
  }
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
  form.addEventListener("change", function (event) {
    if (event.target.tagName === "SELECT") { clearTimeout(timer); refresh(); }
  });
})();
