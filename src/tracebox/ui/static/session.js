// A session page, step by step: j/k (or arrows) move between steps, n/p between pages,
// e to the next error; the URL keeps the step, so any step can be linked.
"use strict";
(() => {
  const meta = tb.data("session-meta") || {};
  const steps = () => Array.from(document.querySelectorAll("#steps > article.step"));
  let cur = -1;

  function focusAt(i, scroll = true) {
    const all = steps();
    if (!all.length) return;
    cur = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((s) => s.classList.remove("focus"));
    const s = all[cur];
    s.classList.add("focus");
    s.focus({ preventScroll: !scroll });
    if (scroll) s.scrollIntoView({ block: "start" });
    history.replaceState(null, "", "#" + s.id);
  }

  function initial() {
    const all = steps();
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (target) {
      if (target.closest("details")) target.closest("details").open = true;
      const i = all.indexOf(target);
      if (i >= 0) { focusAt(i); return; }
      target.classList.add("focus");
      target.scrollIntoView({ block: "start" });
    }
  }

  function go(page) {
    const url = new URL(location.href);
    url.searchParams.set("page", page);
    url.searchParams.delete("step");
    url.hash = "";
    location.href = url.toString();
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, textarea, select") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key;
    if (k === "j" || k === "ArrowDown") { focusAt(cur + 1); ev.preventDefault(); }
    else if (k === "k" || k === "ArrowUp") { focusAt(cur - 1); ev.preventDefault(); }
    else if (k === "n" && meta.page < meta.pages) go(meta.page + 1);
    else if (k === "p" && meta.page > 1) go(meta.page - 1);
    else if (k === "e") {
      const all = steps();
      for (let i = cur + 1; i < all.length; i++) {
        if (all[i].querySelector(".result.bad")) { focusAt(i); break; }
      }
    }
  });
  initial();
})();
