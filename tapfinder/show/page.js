// tapfinder's interactive page: the drawing at each fold level, pan and zoom, a side panel for
// the clicked node, search, toggles per candidate kind and lists of taps and candidates. The
// data is the JSON element "tapfinder-data" (tapfinder/show/page.py writes both).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("tapfinder-data").textContent);
  const canvas = document.getElementById("canvas");
  const details = document.getElementById("details");
  const topKind = {};  // canonical node -> its strongest kind, the drawing's colour
  data.candidates.forEach((c) => { topKind[c.node] = c.kinds[0]; });
  const hiddenKinds = new Set();
  let levelIndex = 0, boxOf = {}, boxElement = {}, svg = null, view = null, selected = null;
  let matches = [], matchIndex = 0;
  // Searchable: the nodes a drawing shows (every level draws the same ones, folded or not).
  const drawnNodes = Object.values(data.levels[0].boxes).flat();

  function make(tag, properties, ...children) {
    const element = document.createElement(tag);
    Object.assign(element, properties || {});
    children.forEach((child) => element.append(child));
    return element;
  }

  // --- header, summary, lists --------------------------------------------------------------
  document.getElementById("model-name").textContent = data.model;
  document.getElementById("provenance").textContent =
    `${data.command} · tapfinder ${data.version}`;
  document.getElementById("summary").textContent =
    data.summary + (data.warnings.length ? "\n\nwarnings:\n" + data.warnings.join("\n") : "");

  const order = data.levels.map((level, index) => index)
    .sort((a, b) => (data.levels[a].collapse || 99) - (data.levels[b].collapse || 99));
  const levelButtons = {};
  order.forEach((index) => {
    const level = data.levels[index];
    const boxes = Object.keys(level.boxes).length;
    const button = make("button", {
      textContent: level.collapse ? `depth ${level.collapse}` : "every node",
      title: `${boxes} boxes`,
      onclick: () => showLevel(index),
    });
    button.dataset.level = level.collapse;
    levelButtons[index] = button;
    document.getElementById("levels").append(button);
  });

  data.taps.forEach((tap) => {
    document.getElementById("taps").append(make("li", {
      className: "tap-entry", textContent: `TAP ${tap.number}  ${tap.node}  (${tap.kinds.join(", ")})`,
      onclick: () => select(tap.node, true),
    }));
  });
  document.getElementById("candidate-count").textContent = data.candidates.length;
  data.candidates.forEach((c) => {
    document.getElementById("candidates").append(make("li", {
      textContent: `${c.score.toFixed(2)}  ${c.node}  (${c.kinds.join(", ")})`,
      onclick: () => select(c.node, true),
    }));
  });
  const usedKinds = [...new Set(data.candidates.flatMap((c) => c.kinds))].sort();
  usedKinds.forEach((kind) => {
    const box = make("input", { type: "checkbox", checked: true });
    box.dataset.kind = kind;
    box.onchange = () => {
      if (box.checked) hiddenKinds.delete(kind); else hiddenKinds.add(kind);
      applyKindToggles();
    };
    const swatch = make("span", { className: "swatch" });
    swatch.style.background = data.kinds[kind] || "#bde0fe";
    document.getElementById("kinds").append(make("label", {}, box, swatch, kind), make("br"));
  });

  // --- drawing, pan and zoom ---------------------------------------------------------------
  function showLevel(index, focus) {
    levelIndex = index;
    const level = data.levels[index];
    Object.values(levelButtons).forEach((b) => b.classList.remove("active"));
    levelButtons[index].classList.add("active");
    canvas.innerHTML = level.svg;
    svg = canvas.querySelector("svg");
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    boxOf = {};
    Object.entries(level.boxes).forEach(([box, members]) => {
      members.forEach((member) => { boxOf[member] = box; });
    });
    boxElement = {};
    svg.querySelectorAll("g.node").forEach((g) => {
      const name = g.querySelector("title").textContent;
      g.dataset.box = name;
      boxElement[name] = g;
      const kinds = (level.boxes[name] || []).filter((m) => m in topKind).map((m) => topKind[m]);
      if (kinds.length) g.dataset.kind = kinds[kinds.length - 1];
    });
    applyKindToggles();
    fit();
    const keep = focus || selected;
    if (keep) select(keep, true);
  }

  function applyKindToggles() {
    if (!svg) return;
    svg.querySelectorAll("g.node[data-kind]").forEach((g) => {
      const hidden = hiddenKinds.has(g.dataset.kind);
      g.querySelectorAll("path, polygon").forEach((shape) => {
        if (!shape.dataset.fill) shape.dataset.fill = shape.getAttribute("fill") || "";
        shape.setAttribute("fill", hidden ? "#ffffff" : shape.dataset.fill);
      });
    });
  }

  function setView(next) {
    view = next;
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  }

  function fit() {
    const rect = canvas.getBoundingClientRect();
    const [x, y, w, h] = (svg.getAttribute("viewBox") || "0 0 100 100").split(/[ ,]+/).map(Number);
    const aspect = rect.width / Math.max(rect.height, 1);
    const width = Math.max(w, h * aspect), height = width / aspect;
    setView({ x: x - (width - w) / 2, y: y - (height - h) / 2, w: width, h: height });
  }

  function toDrawing(clientX, clientY) {
    const rect = canvas.getBoundingClientRect();
    return { x: view.x + (clientX - rect.left) / rect.width * view.w,
             y: view.y + (clientY - rect.top) / rect.height * view.h };
  }

  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const factor = Math.exp(event.deltaY * 0.0015);
    const at = toDrawing(event.clientX, event.clientY);
    setView({ x: at.x - (at.x - view.x) * factor, y: at.y - (at.y - view.y) * factor,
              w: view.w * factor, h: view.h * factor });
  }, { passive: false });

  let drag = null;
  canvas.addEventListener("mousedown", (event) => {
    drag = { x: event.clientX, y: event.clientY, view: { ...view }, moved: false };
  });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; canvas.classList.add("dragging"); }
    const rect = canvas.getBoundingClientRect();
    setView({ ...drag.view, x: drag.view.x - dx * view.w / rect.width,
              y: drag.view.y - dy * view.h / rect.height });
  });
  window.addEventListener("mouseup", () => {
    canvas.classList.remove("dragging");
    setTimeout(() => { drag = null; }, 0);
  });
  canvas.addEventListener("click", (event) => {
    if (drag && drag.moved) return;
    const g = event.target.closest("g.node");
    if (g && !g.dataset.box.startsWith("legend_")) select(g.dataset.box, false);
  });
  canvas.addEventListener("dblclick", (event) => {
    const g = event.target.closest("g.node");
    if (g && !(g.dataset.box in data.nodes)) unfold(g.dataset.box);
  });
  document.getElementById("fit").onclick = () => fit();
  window.addEventListener("resize", () => { if (svg) fit(); });

  function centreOn(g) {
    const rect = canvas.getBoundingClientRect(), box = g.getBoundingClientRect();
    const a = toDrawing(box.left, box.top), b = toDrawing(box.right, box.bottom);
    const height = Math.max(b.y - a.y, 1);
    const scale = view.h > 25 * height ? 25 * height / view.h : 1;  // zoom in on a tiny box
    const w = view.w * scale, h = view.h * scale;
    setView({ x: (a.x + b.x) / 2 - w / 2, y: (a.y + b.y) / 2 - h / 2, w, h });
    return rect;
  }

  // A folded module unfolds at the next finer level that draws its insides.
  function unfold(box) {
    const current = data.levels[levelIndex].collapse || 99;
    const finer = order.find((index) => (data.levels[index].collapse || 99) > current
                                        && !(box in data.levels[index].boxes));
    if (finer !== undefined) showLevel(finer, data.levels[levelIndex].boxes[box][0]);
  }

  // --- selection and the side panel --------------------------------------------------------
  function select(name, centre) {
    selected = name;
    svg.querySelectorAll("g.node.selected").forEach((g) => g.classList.remove("selected"));
    const g = boxElement[boxOf[name] || name];
    if (g) {
      g.classList.add("selected");
      if (centre) centreOn(g);
    }
    details.replaceChildren(...(name in data.nodes ? nodeDetails(name) : moduleDetails(name)));
  }

  function row(label, value) {
    const text = value === null || value === undefined || value === "" ? "-" : String(value);
    return make("tr", {}, make("td", { textContent: label }), make("td", { textContent: text }));
  }

  function link(name) {
    return make("li", { textContent: name, onclick: () => select(name, true) });
  }

  function evidenceBlock(item) {
    const block = make("div", { className: "evidence" },
      make("strong", { textContent: `${item.kind} ${item.score.toFixed(2)}` }), ": " + item.reason);
    block.style.borderLeftColor = data.kinds[item.kind] || "#bde0fe";
    return block;
  }

  function nodeDetails(name) {
    const node = data.nodes[name];
    const parts = [make("h2", { textContent: name })];
    if (node.tap) parts.push(make("div", { className: "tap-label", textContent: `TAP ${node.tap}` }));
    parts.push(make("table", {},
      row("op", node.op), row("target", node.target), row("module", node.module),
      row("module type", node.module_type), row("shape", node.shape), row("dtype", node.dtype),
      row("layout", node.layout), row("stride", node.stride), row("channels", node.channels),
      row("spatial", node.spatial && node.spatial.join("x")), row("parameters", node.params),
      row("layer index", node.layer_index), row("depth", node.depth),
      row("main path", node.on_main_path ? "yes" : "no"), row("inside", node.scope.join(" > "))));
    if (node.evidence.length) {
      parts.push(make("h3", { textContent: "rules' evidence" }), ...node.evidence.map(evidenceBlock));
    }
    const tap = data.taps.find((t) => t.node === name);
    if (tap) parts.push(make("h3", { textContent: "why this tap" }), make("pre", { textContent: tap.explain }));
    return parts;
  }

  function moduleDetails(box) {
    const members = data.levels[levelIndex].boxes[box] || [];
    const last = data.nodes[members[members.length - 1]] || {};
    const parts = [make("h2", { textContent: box }), make("table", {},
      row("module type", data.modules[box]), row("operations", members.length),
      row("output shape", last.shape), row("stride", last.stride),
      row("parameters", members.reduce((sum, m) => sum + data.nodes[m].params, 0)))];
    const taps = members.filter((m) => data.nodes[m].tap);
    if (taps.length) parts.push(make("h3", { textContent: "taps inside" }), make("ul", {}, ...taps.map(link)));
    const evidence = members.filter((m) => data.nodes[m].evidence.length);
    if (evidence.length) {
      parts.push(make("h3", { textContent: "evidence inside" }));
      evidence.forEach((m) => parts.push(make("ul", {}, link(m)), ...data.nodes[m].evidence.map(evidenceBlock)));
    }
    parts.push(make("p", { className: "hint", textContent: "Double-click the box to unfold it." }));
    return parts;
  }

  // --- search ------------------------------------------------------------------------------
  const search = document.getElementById("search");
  function runSearch() {
    const query = search.value.trim().toLowerCase();
    svg.querySelectorAll("g.node.match").forEach((g) => g.classList.remove("match"));
    const list = document.getElementById("matches");
    list.replaceChildren();
    matches = !query ? [] : drawnNodes.filter((name) => {
      const node = data.nodes[name];
      return [name, node.module, node.module_type, node.target]
        .some((text) => text && String(text).toLowerCase().includes(query));
    });
    // Exact names first, then in graph order.
    matches.sort((a, b) => (b.toLowerCase() === query) - (a.toLowerCase() === query));
    document.getElementById("match-count").textContent = matches.length;
    document.getElementById("matches-box").open = matches.length > 0;
    matches.slice(0, 200).forEach((name) => list.append(link(name)));
    matches.forEach((name) => {
      const g = boxElement[boxOf[name] || name];
      if (g) g.classList.add("match");
    });
    matchIndex = 0;
    if (matches.length) select(matches[0], true);
  }
  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !matches.length) return;
    matchIndex = (matchIndex + 1) % matches.length;
    select(matches[matchIndex], true);
  });

  // Start at the finest level that stays readable (at most 300 boxes), else the coarsest.
  const readable = order.filter((index) => Object.keys(data.levels[index].boxes).length <= 300);
  showLevel(readable.length ? readable[readable.length - 1] : order[0]);
  document.body.dataset.readyMs = Math.round(performance.now());  // since navigation began
  document.body.dataset.ready = "true";
})();
