// The Models tab: the models this server offers and where each was found (GET /api/models), what fits
// this machine for a document of a given length (GET /api/models/recommend, the budget manager's own
// arithmetic), and pulling a model by name from Hugging Face (POST /api/models/pull, its progress from
// GET /api/models/pulls/{id}) for whoever may manage models: the server says who first (GET /api/models/pull).
import { api } from "./api.js";
import { $, duration, el, num, setStatus, userText } from "./dom.js";
import { chooseModel, gigabytes, listedModels, loadModels, modelAbout, plannedTokens } from "./plan.js";

const POLL_MS = 1000;
const KV_ORDER = ["f16", "q8_0", "q4_0"]; // the best-kept cache first: the one recommended when it fits
const models = { access: null, polling: new Map(), seq: 0, onUse: () => {} };

// ---- the models on this server ------------------------------------------------------------------

function modelEntry(m) {
  const use = el("button", { type: "button", class: "small", disabled: Boolean(m.error) }, "Use");
  use.setAttribute("aria-label", `Use ${m.name}`);
  use.addEventListener("click", () => useModel(m.name));
  return el("li", { class: `model-entry${m.error ? " unusable" : ""}`, "data-name": m.name },
    el("div", { class: "model-what" },
      userText("span", m.name, { class: "model-name" }),
      userText("span", modelAbout(m), { class: "meta" })),
    use);
}

function showModels() {
  const list = listedModels();
  $("models-list").replaceChildren(...list.map(modelEntry));
}

function useModel(name) {
  if (chooseModel(name)) models.onUse(name);
}

// ---- what fits this machine ---------------------------------------------------------------------

/** The rows of one (model, quantization) together: one per KV cache type. */
function grouped(rows) {
  const groups = new Map();
  for (const r of rows) {
    const key = `${r.model}\u0000${r.quant}\u0000${r.source}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  return [...groups.values()].map((g) => g.sort((a, b) => KV_ORDER.indexOf(a.cache_type) - KV_ORDER.indexOf(b.cache_type)));
}

/** Which KV type reads the document, in words: the best-kept cache that fits, else why not (the memory, or
 * the longest context the model reads) and how it would be read instead. */
function verdict(group) {
  const first = group[0];
  if (first.cache_type === null) return { fits: first.fits, text: first.note || first.sentence }; // a remote model
  const fits = group.find((r) => r.fits);
  if (fits) {
    const reading = fits.reading?.seconds ? `; reading it takes about ${duration(fits.reading.seconds)}` : "";
    return { fits: true, row: fits,
      text: `✓ Fits, read whole with a ${fits.cache_type} KV cache: needs ${gigabytes(fits.needed_bytes)} of ${gigabytes(fits.available_bytes)}${reading}` };
  }
  const least = group.reduce((a, b) => ((b.needed_bytes ?? Infinity) < (a.needed_bytes ?? Infinity) ? b : a));
  const widest = group.reduce((a, b) => (b.longest_whole_tokens > a.longest_whole_tokens ? b : a));
  const instead = group.some((r) => r.mode === "chunked") ? "Read in chunks" : "Does not fit";
  if (least.needed_bytes !== null && least.needed_bytes <= least.available_bytes && widest.longest_whole_tokens) {
    return { fits: false, row: widest, text: `✗ ${instead}: longer than the ${num(widest.longest_whole_tokens)} tokens this model reads whole` };
  }
  const none = group.every((r) => !r.longest_whole_tokens) ? " (no document fits beside these weights)" : "";
  return { fits: false, row: least,
    text: `✗ ${instead}: read whole it needs ${gigabytes(least.needed_bytes)} even with a ${least.cache_type} KV cache, more than ${gigabytes(least.available_bytes)}${none}` };
}

function longest(group) {
  if (group[0].cache_type === null) return el("span", { class: "muted" }, "served context");
  return el("ul", { class: "kv-list" }, group.map((r) => el("li", {},
    el("span", { class: "kv" }, r.cache_type), " ",
    r.longest_whole_tokens ? `${num(r.longest_whole_tokens)} tokens` : "none")));
}

function getIt(group) {
  const r = group[0];
  const onDisk = listedModels().some((m) => m.name === r.model || r.model.startsWith(`${m.name} (`));
  if (r.source === "on disk" || r.source === "remote" || onDisk) {
    const name = listedModels().find((m) => m.name === r.model || r.model.startsWith(`${m.name} (`))?.name;
    if (!name) return el("span", { class: "muted" }, "on this server");
    const use = el("button", { type: "button", class: "small" }, "Use");
    use.setAttribute("aria-label", `Use ${name}`);
    use.addEventListener("click", () => useModel(name));
    return use;
  }
  if (!r.pull) return "";
  if (models.access?.allowed) {
    const pull = el("button", { type: "button", class: "small pull" }, "Pull");
    pull.setAttribute("aria-label", `Pull ${r.pull}`);
    pull.addEventListener("click", () => startPull(r.pull, pull));
    return pull;
  }
  return el("code", { class: "command" }, `docqa pull ${r.pull}`); // for whoever runs the server
}

const ORIGIN = { "on disk": "on this server", "known table": "not downloaded: architecture from its config.json",
  "hub header": "on the hub: architecture from its GGUF header", remote: "on a model server" };

function fitRow(group) {
  const r = group[0];
  const v = verdict(group);
  const weights = r.cache_type === null ? "—" : `${r.weights_exact ? "" : "~"}${gigabytes(r.weights_bytes)}`;
  return el("tr", { class: v.fits ? "fits" : "no-fit", "data-model": r.model, "data-quant": r.quant },
    el("th", { scope: "row" }, r.quant || "—"),
    el("td", { "data-label": "Weights" }, weights),
    el("td", { "data-label": "Read whole, at most" }, longest(group)),
    el("td", { class: "verdict", title: v.row?.sentence || undefined }, v.text),
    el("td", { class: "get" }, getIt(group)));
}

/** One table body per model: its name and where it is, then a row per quantization. */
function modelRows(groups) {
  const byModel = new Map();
  for (const g of groups) {
    const key = `${g[0].model}\u0000${g[0].source}`;
    if (!byModel.has(key)) byModel.set(key, []);
    byModel.get(key).push(g);
  }
  return [...byModel.values()].map((gs) => el("tbody", { "data-model": gs[0][0].model },
    el("tr", { class: "model-head" }, el("th", { colspan: 5, scope: "rowgroup" },
      userText("span", gs[0][0].model, { class: "model-name" }), " ",
      el("span", { class: "meta" }, ORIGIN[gs[0][0].source] || gs[0][0].source))),
    gs.map(fitRow)));
}

async function showFits() {
  const seq = ++models.seq;
  const tokens = $("fit-tokens").value;
  const memory = $("fit-memory").value;
  const query = new URLSearchParams({ tokens });
  if (memory) query.set("memory", memory);
  setStatus($("fit-summary"), "Working out what fits…");
  try {
    const r = await api(`/api/models/recommend?${query}`);
    if (seq !== models.seq) return;
    const where = memory ? `a machine with ${gigabytes(r.available_bytes)}` : `this machine: ${gigabytes(r.available_bytes)} available`;
    setStatus($("fit-summary"), `A ${num(Number(tokens))}-token document on ${where}. Each row: the longest document read whole with each KV cache type, and whether this one fits.`);
    $("fit-doc-h").textContent = `A ${num(Number(tokens))}-token document`;
    $("fit-caption").textContent = `What fits ${memory ? `in ${gigabytes(r.available_bytes)}` : "this machine"}: models, quantizations and KV cache types`;
    for (const body of [...$("fit-table").tBodies]) body.remove();
    $("fit-table").append(...modelRows(grouped(r.rows)));
    $("fit-table").hidden = false;
    const sources = Object.entries(r.sources || {});
    $("fit-sources").replaceChildren(...(sources.length ? [
      "Models not yet downloaded: architecture from their config.json (",
      ...sources.flatMap(([name, url], i) => [i ? ", " : "", el("a", { href: url, rel: "noreferrer", target: "_blank" }, name)]),
      "); weights estimated from the parameter count (~). Memory: weights, KV cache, compute buffers and a margin, as docqa plans a reading.",
    ] : []));
  } catch (err) {
    if (seq === models.seq) setStatus($("fit-summary"), `What fits could not be worked out: ${err.message}`, "error");
  }
}

/** The chosen documents' length, when a plan said it, as the first choice of document length. */
function offerPlannedLength() {
  const select = $("fit-tokens");
  select.querySelector("option.planned")?.remove();
  const tokens = plannedTokens();
  if (!tokens) return;
  const option = el("option", { value: String(tokens), class: "planned" }, `${num(tokens)} tokens (the chosen documents)`);
  select.prepend(option);
  select.value = String(tokens);
}

// ---- pulling --------------------------------------------------------------------------------------

function rate(n) {
  if (!n) return "";
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB/s` : `${Math.max(1, Math.round(n / 1e3))} KB/s`;
}

function pullWords(p) {
  const of = `${gigabytes(p.bytes_done)} of ${gigabytes(p.bytes_total)}`;
  switch (p.status) {
    case "downloading": {
      const parts = [of];
      if (p.rate_bytes_per_s) parts.push(rate(p.rate_bytes_per_s));
      if (typeof p.eta_s === "number") parts.push(`about ${duration(p.eta_s)} left`);
      if (p.bytes_resumed) parts.push(`resumed after ${gigabytes(p.bytes_resumed)}`);
      return `Downloading: ${parts.join(" · ")}`;
    }
    case "done": return `Pulled: ${of}, sha256 checked. It is in the model picker as ${p.model}.`;
    case "cancelled": return `Stopped at ${of}. ${p.error?.detail || ""}`.trim();
    default: return `The pull failed: ${p.error?.detail || "the server did not say why"}`;
  }
}

function pullItem(p) {
  let li = document.querySelector(`#pulls li[data-id="${p.id}"]`);
  if (!li) {
    li = el("li", { class: "pull-item", "data-id": p.id });
    $("pulls").prepend(li);
  }
  const bar = el("progress", { max: Math.max(p.bytes_total, 1), value: p.bytes_done, "aria-label": `Pulling ${p.ref}` });
  const actions = el("div", { class: "row" });
  if (p.status === "downloading") {
    const cancel = el("button", { type: "button", class: "small" }, "Cancel");
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        pullItem(await api(`/api/models/pulls/${encodeURIComponent(p.id)}`, { method: "DELETE" }));
      } catch (err) {
        setStatus($("pull-status"), err.message, "error");
      }
    });
    actions.append(cancel);
  } else if (p.status === "done" && p.model) {
    const use = el("button", { type: "button", class: "small primary" }, "Use it");
    use.addEventListener("click", () => useModel(p.model));
    actions.append(use);
  } else if (p.status === "cancelled" || p.status === "failed") {
    const again = el("button", { type: "button", class: "small" }, p.status === "cancelled" ? "Resume" : "Try again");
    again.addEventListener("click", () => startPull(p.ref, again));
    actions.append(again);
  }
  const fit = p.fit?.sentence ? el("p", { class: `fit ${p.fit.fits ? "ok" : "warn"}` }, `Before downloading: ${p.fit.sentence}.`) : "";
  li.className = `pull-item ${p.status}`;
  li.replaceChildren(
    userText("p", p.ref, { class: "pull-ref" }),
    ...(p.status === "downloading" || p.status === "cancelled" ? [bar] : []),
    el("p", { class: `pull-words${p.status === "failed" ? " error" : ""}`, role: p.status === "failed" ? "alert" : undefined }, pullWords(p)),
    fit,
    actions,
  );
  return li;
}

function follow(p) {
  pullItem(p);
  if (p.status !== "downloading" || models.polling.has(p.id)) return;
  const timer = setInterval(async () => {
    let now;
    try {
      now = await api(`/api/models/pulls/${encodeURIComponent(p.id)}`);
    } catch (err) {
      clearInterval(timer);
      models.polling.delete(p.id);
      setStatus($("pull-status"), `The pull's progress could not be read: ${err.message}`, "error");
      return;
    }
    pullItem(now);
    if (now.status === "downloading") return;
    clearInterval(timer);
    models.polling.delete(p.id);
    if (now.status === "done") {
      await loadModels(); // the pulled model is offered now: the picker and the list show it
      showModels();
      showFits();
    }
  }, POLL_MS);
  models.polling.set(p.id, timer);
}

async function startPull(name, button) {
  const text = name.trim();
  if (!text) {
    setStatus($("pull-status"), "Name a model first, e.g. hf:Qwen/Qwen3-4B-Instruct-2507-GGUF:Q4_K_M.", "error");
    $("pull-name").focus();
    return;
  }
  setStatus($("pull-status"), `Looking up ${text} on the hub…`);
  if (button) button.disabled = true;
  try {
    const p = await api("/api/models/pull", { method: "POST", body: { model: text } });
    setStatus($("pull-status"), "");
    follow(p);
  } catch (err) {
    setStatus($("pull-status"), err.message, "error");
  } finally {
    if (button) button.disabled = false;
  }
}

async function showAccess() {
  try {
    models.access = await api("/api/models/pull");
  } catch (err) {
    models.access = { allowed: false, detail: `Whether this server lets you pull models is not known: ${err.message}` };
  }
  $("pull-form").hidden = !models.access.allowed;
  $("pull-access").textContent = models.access.allowed
    ? "Pull a GGUF model by name into docqa's models folder; the table below says first whether it fits this machine. Nothing is downloaded unless you ask."
    : `${models.access.detail || "This server does not pull models."} The table below shows the command the operator would run.`;
  if (models.access.allowed) {
    try {
      for (const p of (await api("/api/models/pulls")).reverse()) follow(p); // pulls started earlier, this page or another
    } catch {
      /* the list of earlier pulls is a convenience */
    }
  }
}

/** The tab was opened: everything in it is read afresh. */
export async function loadModelsPanel() {
  showModels();
  offerPlannedLength();
  await showAccess();
  await showFits();
}

export function setUpModels({ onUse }) {
  models.onUse = onUse;
  $("pull-form").addEventListener("submit", (e) => {
    e.preventDefault();
    startPull($("pull-name").value, $("pull-button"));
  });
  $("fit-tokens").addEventListener("change", showFits);
  $("fit-memory").addEventListener("change", showFits);
}
