// Live progress of a background job: ask for its state every second and reload when it ends.
// Without JavaScript the page refreshes itself (<noscript> meta refresh) instead.
(function () {
  "use strict";
  var box = document.getElementById("job");
  if (!box) { return; }
  var url = box.getAttribute("data-state-url");
  var bar = document.getElementById("job-progress");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.finished) { window.location.reload(); return; }
        if (bar && s.total) { bar.max = s.total; bar.value = s.done; }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
