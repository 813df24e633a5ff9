// tracebox ui: shared helpers (no framework, no network beyond this origin).
"use strict";
window.tb = {
  el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  },
  data(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  },
};
