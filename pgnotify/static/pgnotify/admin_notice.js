// A small live notice on every admin page: the latest changes made elsewhere, from /ws/dashboard/.
(function () {
  "use strict";
  var box = document.getElementById("pgnotify-notice"), SHOWN = 4, seen = new Set();

  function describe(event) {
    var changed = Array.isArray(event.changed) && event.changed.length ? " · " + event.changed.join(", ") : "";
    return [event.op, " ", event.table, " pk=", window.pgnotify.keyText(event.pk), changed];
  }

  function show(event) {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    var item = document.createElement("div");
    item.className = "item";
    item.dataset.eventId = event.id;
    var parts = describe(event), op = document.createElement("b");
    op.textContent = parts[0];  // text only: row values never become HTML
    item.appendChild(op);
    item.appendChild(document.createTextNode(parts.slice(1).join("")));
    box.insertBefore(item, box.children[1] || null);
    while (box.querySelectorAll(".item").length > SHOWN) box.removeChild(box.lastElementChild);
    box.classList.add("shown");
    setTimeout(function () { if (item.parentNode) item.parentNode.removeChild(item); if (!box.querySelector(".item")) box.classList.remove("shown"); }, 15000);
  }

  new window.pgnotify.LiveSocket("/ws/dashboard/", {
    onFrame: function (frame) {
      if (frame.type !== "changes") return;
      frame.events.slice(-SHOWN).forEach(show);
    },
  });
})();
