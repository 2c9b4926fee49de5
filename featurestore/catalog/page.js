"use strict";
// The catalog page's script (featurestore/catalog/page.py embeds it). Every value from the
// catalog document becomes a DOM text node or an attribute set through the DOM, never markup.
(function () {
  const doc = JSON.parse(document.getElementById("catalog-data").textContent);
  const views = new Map(doc.views.map((v) => [v.name, v]));
  // by id: a stored feature's name, "<service>.<name>" for a request-time feature
  const features = new Map(doc.features.map((f) => [f.id, f]));
  const $ = (id) => document.getElementById(id);

  // el("td", {className: "name"}, "text", childNode...): strings become text nodes
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  // a default as JSON, a float with its decimal point (0.0, not 0)
  function show(value, type) {
    if (value === null || value === undefined) return "null";
    if (type === "float" && Number.isInteger(value)) return value.toFixed(1);
    return JSON.stringify(value);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    const units = [["d", 86400], ["h", 3600], ["m", 60]];
    for (const [unit, size] of units) if (seconds >= size) return (seconds / size).toFixed(1) + " " + unit;
    return Math.round(seconds) + " s";
  }

  // a view's freshness at build time: [css class, short label, sentence]
  function freshness(view) {
    if (!view.online) return ["offline", "offline", "Offline only (not loaded into the online store)."];
    if (!doc.freshness_checked) return ["unknown", "not checked", "Not checked: the catalog was built without --online."];
    const f = view.freshness;
    if (!f || f.data_as_of === null) return ["stale", "never loaded", "Never loaded into the online store (over its SLA of " + view.freshness_sla + ")."];
    const sentence = "Data as of " + f.data_as_of + " (" + f.source + "), " + age(f.age_seconds) +
      " old when the catalog was built; SLA " + view.freshness_sla + ".";
    return f.breached ? ["stale", "over SLA", sentence] : ["fresh", "fresh", sentence];
  }

  function fillSelect(select, values) {
    for (const value of [...new Set(values)].sort()) select.append(el("option", {value: value}, value));
  }

  const count = (n, noun) => n + " " + noun + (n === 1 ? "" : "s");
  const built = new Date(doc.generated_at);
  const minutes = Math.max(0, Math.round((Date.now() - built.getTime()) / 60000));
  $("built").append(
    count(doc.features.length, "feature") + " in " + count(doc.views.length, "view") + " and " +
      count(doc.services.length, "feature service") + ". Built " + doc.generated_at +
      " (" + minutes + " min ago)" +
      (doc.freshness_checked ? "; freshness read then from " + doc.store + "." : "; freshness not checked (no --online store given)."),
  );
  fillSelect($("owner"), doc.features.map((f) => f.owner));
  fillSelect($("entity"), doc.features.flatMap((f) => f.entities));
  fillSelect($("service"), doc.services.map((s) => s.name));

  const rows = new Map();
  for (const f of doc.features) {
    const stored = f.kind === "stored";
    const [cls, label] = stored ? freshness(views.get(f.view)) : ["offline", "at request"];
    const row = el("tr", {dataset: {feature: f.id}},
      el("td", {className: "name"}, f.name), el("td", {}, f.type), el("td", {}, f.entities.join(", ")),
      el("td", {}, stored ? f.view : "request time: " + f.services.join(", ")), el("td", {}, f.owner),
      el("td", {}, stored ? (f.online ? "yes" : "no") : "computed"),
      el("td", {}, el("span", {className: "badge " + cls}, label)));
    row.tabIndex = 0;  // reachable with Tab; Enter or Space opens it
    row.addEventListener("click", () => select(f.id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(f.id); }
    });
    rows.set(f.id, row);
    $("features").tBodies[0].append(row);
  }

  // the search rule (README "Catalog"): every word of the box is a case-insensitive
  // substring of the feature's name, description, view, owner or entity; the selects match exactly
  function matches(f, words, owner, entity, service, onlineOnly) {
    const text = [f.name, f.description, f.view || "", f.owner, ...f.entities].join("\n").toLowerCase();
    return words.every((w) => text.includes(w)) &&
      (!owner || f.owner === owner) && (!entity || f.entities.includes(entity)) &&
      (!service || f.services.includes(service)) && (!onlineOnly || f.online);
  }

  function filter() {
    const words = $("q").value.toLowerCase().split(/\s+/).filter((w) => w);
    const [owner, entity, service] = [$("owner").value, $("entity").value, $("service").value];
    let shown = 0;
    for (const f of doc.features) {
      const visible = matches(f, words, owner, entity, service, $("online-only").checked);
      rows.get(f.id).hidden = !visible;
      if (visible) shown += 1;
    }
    $("count").textContent = shown + " of " + doc.features.length + " features";
    $("empty").hidden = shown > 0;
    saveState();
  }

  function definition(list, term, ...values) {
    list.append(el("dt", {}, term), el("dd", {}, ...values));
  }

  function featureLink(id) {
    const a = el("a", {href: "#"}, features.get(id).name);
    a.addEventListener("click", (event) => { event.preventDefault(); select(id); });
    return a;
  }

  // a service's name: shows its card
  function serviceLink(name) {
    const a = el("a", {href: "#"}, name);
    a.addEventListener("click", (event) => {
      event.preventDefault();
      const card = [...document.querySelectorAll("#service-list .service")].find((c) => c.dataset.service === name);
      if (card) card.scrollIntoView({block: "start"});
    });
    return a;
  }

  function lineage(view) {
    const box = el("div", {className: "lineage"});
    const names = new Map(view.lineage.map((n) => [n.id, n.name]));
    const depth = Math.max(-1, ...view.lineage.map((n) => n.depth));
    for (let d = 0; d <= depth; d += 1) {
      const title = d === 0 ? "raw" : d === depth ? "feature view" : "step " + d;
      const layer = el("div", {className: "layer"}, el("div", {className: "layer-title"}, title));
      for (const n of view.lineage.filter((x) => x.depth === d)) {
        const node = el("div", {className: "node " + n.kind + (d === depth ? " self" : ""), title: n.relation || ""},
          el("div", {className: "kind"}, n.kind), el("div", {className: "mono"}, n.name));
        if (n.parents.length) node.append(el("div", {className: "reads"}, "reads " + n.parents.map((p) => names.get(p) || p).join(", ")));
        if (n.description) node.append(el("div", {className: "reads"}, n.description));
        layer.append(node);
      }
      box.append(layer);
    }
    return box;
  }

  let selected = "";
  function select(id) {
    const f = features.get(id);
    const panel = $("details");
    panel.replaceChildren();
    if (rows.has(selected)) rows.get(selected).classList.remove("selected");
    selected = f ? id : "";
    panel.hidden = !f;
    if (!f) { saveState(); return; }
    rows.get(id).classList.add("selected");
    if (f.kind === "request") requestDetails(f, panel); else storedDetails(f, panel);
    panel.scrollIntoView({block: "nearest"});
    saveState();
  }

  function servicesUsing(f) {
    const used = el("span", {className: "services"}, f.services.length ? null : "none");
    f.services.forEach((name, i) => used.append(i ? ", " : "", serviceLink(name)));
    return used;
  }

  // a request-time feature: its expression, what it reads, and the lineage of those views
  function requestDetails(f, panel) {
    const list = el("dl", {});
    definition(list, "Type", f.type + " (computed at request time)");
    definition(list, "Description", el("span", {className: "description"}, f.description));
    definition(list, "Expression", el("code", {}, f.expression));
    const reads = el("span", {});
    f.reads.forEach((name, i) => reads.append(i ? ", " : "", features.has(name) ? featureLink(name) : name));
    f.request_fields.forEach((name, i) => reads.append(i || f.reads.length ? ", " : "", el("code", {}, "request." + name)));
    definition(list, "Reads", reads);
    definition(list, "Entities", f.entities.join(", "));
    definition(list, "Owner", f.owner);
    definition(list, "Default", "none: a null value is answered MISSING (reason NULL)");
    definition(list, "Feature services", servicesUsing(f));
    panel.append(el("h2", {}, f.name), list);
    const read = [...new Set(f.reads.map((name) => features.get(name)).filter((s) => s).map((s) => s.view))];
    for (const name of read) panel.append(el("h3", {}, "Lineage of " + name), lineage(views.get(name)));
  }

  function storedDetails(f, panel) {
    const view = views.get(f.view);
    const [cls, label, sentence] = freshness(view);
    const list = el("dl", {});
    definition(list, "Type", f.type + " (" + f.data_type + ")");
    definition(list, "Description", el("span", {className: "description"}, f.description));
    definition(list, "Entity", f.entity + " (keys " + view.keys.join(", ") + ")");
    definition(list, "View", el("span", {className: "mono"}, f.view), " " + view.relation);
    definition(list, "Owner", f.owner);
    definition(list, "TTL", f.ttl);
    definition(list, "Freshness SLA", f.freshness_sla);
    definition(list, "Current freshness", el("span", {className: "badge " + cls}, label), " " + sentence);
    definition(list, "Default", el("code", {}, show(f.default, f.type)));
    definition(list, "Online", f.online ? "yes" + (view.streamed ? " (kept fresh by the stream worker)" : "") : "no");
    if (f.aggregation) definition(list, "Aggregation", el("code", {}, f.aggregation));
    definition(list, "Feature services", servicesUsing(f));
    panel.append(el("h2", {}, f.name), list, el("h3", {}, "Lineage (raw sources to the view)"), lineage(view));
  }

  function serviceList() {
    const box = $("service-list");
    if (!doc.services.length) { box.append(el("p", {}, "No feature service is declared in the registry.")); return; }
    for (const s of doc.services) {
      const card = el("div", {className: "service", dataset: {service: s.name}},
        el("h3", {className: "mono"}, s.name), el("div", {}, "Owner: " + s.owner),
        el("p", {className: "description"}, s.description));
      const used = el("div", {}, "Features: ");
      s.features.forEach((name, i) => used.append(i ? ", " : "", features.has(name) ? featureLink(name) : name));
      card.append(used, el("div", {}, "Entities: " + s.entities.join(", ")));
      if (s.request_fields.length) card.append(el("div", {}, "Request fields: " + s.request_fields.map((r) => r.name + " (" + r.type + ")").join(", ")));
      for (const r of s.request_features) {
        const id = s.name + "." + r.name;
        card.append(el("div", {}, "Request feature ", features.has(id) ? featureLink(id) : r.name,
          " = ", el("code", {}, r.expression), " (" + r.type + "): " + r.description));
      }
      box.append(card);
    }
  }

  // the search and the open feature live in the URL's fragment: a link shares them
  const fields = {q: "q", owner: "owner", entity: "entity", service: "service"};
  function saveState() {
    const params = new URLSearchParams();
    for (const [key, id] of Object.entries(fields)) if ($(id).value) params.set(key, $(id).value);
    if ($("online-only").checked) params.set("online", "1");
    if (selected) params.set("feature", selected);
    history.replaceState(null, "", "#" + params.toString());
  }
  function loadState() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const [key, id] of Object.entries(fields)) $(id).value = params.get(key) || "";
    $("online-only").checked = params.get("online") === "1";
    filter();
    select(params.get("feature") || "");
  }

  for (const id of ["q", "owner", "entity", "service", "online-only"]) {
    for (const type of ["input", "change"]) $(id).addEventListener(type, filter);
  }
  serviceList();
  loadState();
  window.addEventListener("hashchange", loadState);  // an edited link, back and forward
  document.body.dataset.ready = "1";
})();
