// The nimbus dashboard's only script: the live log tail. Lines arrive as server-sent
// events; each is added as text (never as HTML).
"use strict";
(function () {
  const list = document.getElementById("tail");
  if (!list) return;
  const status = document.getElementById("tail-status");
  const maxLines = 1000;
  const source = new EventSource(list.dataset.source);
  const span = (cls, text) => {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  };
  source.onopen = () => { status.textContent = "Following new lines as they are written."; };
  source.onerror = () => { status.textContent = "Disconnected; reconnecting…"; };
  source.onmessage = (event) => {
    let line;
    try { line = JSON.parse(event.data); } catch (e) { return; }
    const item = document.createElement("li");
    item.className = "level-" + String(line.level).toLowerCase() + " stream-" + line.stream;
    item.dataset.requestId = line.requestId || "";
    item.append(span("t", line.time), " ", span("fn", line.function), " ",
      span("rid", line.requestId || "-"), " ", span("lvl", line.level), " ", span("msg", line.message));
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(item);
    while (list.children.length > maxLines) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  };
})();
