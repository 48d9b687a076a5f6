// The model picker and the plan: how the chosen documents will be read, what memory it takes, how long
// the reading will take at the rate measured for this model on this server, and whether a snapshot exists.
import { api, apiKey } from "./api.js";
import { $, bytes, capitalised, duration, el, num, params, plural, setStatus } from "./dom.js";
import { selectedIds, setExactTokens, setModelKey } from "./documents.js";

const plan = { seq: 0, models: [], tokens: null, onReadme: () => {} };
const READ_AHEAD_POLL_MS = 1500;
export const READ_AHEAD_PAUSE_MS = 800; // the choice must rest this long before its read-ahead starts
const sameIds = (a, b) => a.length === b.length && [...a].sort().every((id, i) => id === [...b].sort()[i]);
// The page's one read-ahead: the set ticked now (choiceKey), whether the server holds one of ours, and
// whether a question on that very set is being answered (then the question is what reads it).
const ahead = { key: null, held: false, asking: null, read: new Set(), enabled: null };

/** Whether this server reads ahead at all (DOCQA_READ_AHEAD); asked once. */
async function readAheadEnabled() {
  if (ahead.enabled === null) {
    try {
      ahead.enabled = Boolean((await api("/api/read-ahead")).enabled);
    } catch {
      return false; // asked again next time
    }
  }
  return ahead.enabled;
}

export function choice() {
  const body = { document_ids: selectedIds() };
  if ($("model").value) body.model = $("model").value;
  if ($("mode").value) body.mode = $("mode").value;
  return body;
}

export const choiceKey = () => JSON.stringify([selectedIds(), $("model").value, $("mode").value]);

/** A model's entry in the picker, short enough for the narrow side column: the name it is found under, its
 * size and quantization; the rest (where it was found, context, architecture) goes in the line under it. */
function modelLabel(m) {
  if (m.error) return `${m.name} (unusable)`;
  const size = m.size_label || params(m.parameters);
  return [foundLabel(m) || m.name, size, m.quantization].filter(Boolean).join(" · ");
}

/** "qwen3:4b" from where "Ollama: qwen3:4b": the name the other tool gives it ("" when docqa names it). */
const foundLabel = (m) => (m.where && m.source ? m.where.slice(m.source.length + 2) : "");

/** Where a model comes from, for the picker's groups: another tool's folder, or this server's own models. */
const groupOf = (m) => m.source || (m.backend === "remote" ? "Remote servers" : "Configured");

/** Everything about a model in a sentence-like line: the picker's description and the Models tab's entry. */
export function modelAbout(m) {
  if (!m) return "";
  if (m.error) return `Unusable: ${m.error}`;
  const parts = [];
  if (m.where) parts.push(`Found in ${m.where}`);
  else if (m.backend === "remote") parts.push("On a model server");
  if (m.display_name) parts.push(m.display_name);
  if (m.parameters) parts.push(`${m.size_label || params(m.parameters)} parameters`);
  if (m.quantization) parts.push(m.quantization);
  if (typeof m.size_bytes === "number") parts.push(`${gigabytes(m.size_bytes)} of weights${m.parts > 1 ? ` in ${m.parts} parts` : ""}`);
  if (m.architecture) parts.push(m.architecture);
  if (m.n_ctx_train) parts.push(`${num(m.n_ctx_train)} ctx (trained)`);
  return parts.join(" · ");
}

/** Bytes in GB of 10^9 bytes, as `docqa models` and the recommendations say them. */
export function gigabytes(n) {
  if (typeof n !== "number") return "?";
  return n >= 1e8 ? `${(n / 1e9).toFixed(1)} GB` : `${Math.max(1, Math.round(n / 1e6))} MB`;
}

export const listedModels = () => plan.models;

function showModelNote() {
  const m = plan.models.find((x) => x.name === $("model").value);
  $("model-about").textContent = modelAbout(m);
  const note = $("model-note");
  if (!m?.embedded) {
    note.hidden = true;
    return;
  }
  const link = el("button", { type: "button", class: "linkish", id: "model-readme" }, "How to bring a GGUF model");
  link.addEventListener("click", () => plan.onReadme("Bring your own model", link));
  note.replaceChildren(
    el("strong", {}, "Demo model"),
    ": enough to try docqa, too weak for real contracts or code. ",
    link,
  );
  note.hidden = false;
}

export async function loadModels() {
  const select = $("model");
  try {
    const keep = select.value;
    plan.models = await api("/api/models");
    const option = (m) => el("option", { value: m.name, disabled: Boolean(m.error), title: modelAbout(m) }, modelLabel(m));
    const groups = [...new Set(plan.models.map(groupOf))];
    select.replaceChildren(...(groups.length > 1
      ? groups.map((g) => el("optgroup", { label: g }, plan.models.filter((m) => groupOf(m) === g).map(option)))
      : plan.models.map(option)));
    const usable = plan.models.find((m) => m.name === keep && !m.error) || plan.models.find((m) => !m.error);
    if (usable) select.value = usable.name;
  } catch (err) {
    select.replaceChildren(el("option", { value: "" }, "server default"));
    setStatus($("plan-text"), `The models could not be listed: ${err.message}`, "error");
  }
  showModelNote();
  setModelKey(modelKey());
}

/** Choose `name` in the picker (a model just pulled), as if the person had. */
export function chooseModel(name) {
  const select = $("model");
  if (![...select.options].some((o) => o.value === name && !o.disabled)) return false;
  select.value = name;
  select.dispatchEvent(new Event("change"));
  return true;
}

function readingWords(p) {
  if (p.snapshot) return "a snapshot of this reading is on disk: the answer starts almost at once";
  const r = p.reading;
  if (!r) return "";
  if (r.seconds === null || r.seconds === undefined) return `not known yet: ${r.basis}`;
  return `about ${duration(r.seconds)} before the first word (${r.basis})`;
}

/** Answer lengths within the plan's answer budget (max_tokens may not exceed it); "Continue" goes further. */
function lengthOptions(budget) {
  const select = $("answer-length");
  if (!budget || select.dataset.budget === String(budget)) return;
  const keep = select.value;
  const short = Math.max(16, Math.round(budget / 4));
  const medium = Math.max(short + 1, Math.round(budget / 2));
  select.replaceChildren(
    el("option", { value: "" }, `full (${num(budget)} tokens)`),
    el("option", { value: String(medium) }, `medium (${num(medium)} tokens)`),
    el("option", { value: String(short) }, `short (${num(short)} tokens)`),
  );
  select.dataset.budget = String(budget);
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

/** The model's picker entry, as the key of exact token counts kept in this browser (documents.js). */
export function modelKey(name = $("model").value) {
  const m = plan.models.find((x) => x.name === name);
  return m ? [m.name, m.parameters, m.quantization, m.n_ctx_train].join("|") : name || "";
}

/** The tokens the chosen documents take with this model, once a plan said (the Models tab's default length). */
export const plannedTokens = () => plan.tokens;

export function showPlan(p) {
  plan.tokens = p.prompt_tokens || null;
  lengthOptions(p.answer_tokens);
  const summary = p.summary || `${p.mode}, ${num(p.prompt_tokens)} tokens`;
  setStatus($("plan-text"), `${capitalised(summary)}.`);
  $("plan-text").classList.remove("muted");
  const reason = $("plan-reason");
  reason.hidden = !p.reason || summary.includes(p.reason);
  reason.textContent = p.reason ? `Why: ${p.reason}.` : "";
  const reading = $("plan-reading");
  const words = readingWords(p);
  reading.hidden = !words;
  reading.replaceChildren(el("strong", {}, "Reading: "), words);
  reading.classList.toggle("snapshot", Boolean(p.snapshot));
  const rows = [
    ["Mode", p.mode === "whole" ? "whole document in one context" : "chunked map-reduce"],
    ["Tokens to read", `${num(p.prompt_tokens)} (exact, documents and instructions)`],
    ["Context", `${num(p.n_ctx)} tokens${p.yarn_factor ? ` (YaRN ×${p.yarn_factor} over ${num(p.n_ctx_train)})` : ""}`],
    ["KV cache", `${bytes(p.kv_bytes)} (${p.type_k})`],
    ["Memory", `${bytes(p.needed_bytes)} needed of ${bytes(p.available_bytes)} available`],
  ];
  if (p.mode === "chunked") rows.push(["Chunks", `${plural(p.n_chunks, "chunk")} of ${num(p.chunk_ctx)} tokens`]);
  $("plan-numbers").replaceChildren(...rows.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  $("plan-more").hidden = false;
  const ids = p.document_ids || selectedIds();
  if (ids.length === 1 && p.prompt_tokens) setExactTokens(ids[0], p.prompt_tokens, modelKey(p.model || undefined));
}

function readAheadWords(r) {
  const of = `${num(r.tokens_done)} of ${num(r.tokens_limit || r.tokens_total)} tokens`;
  switch (r.state) {
    case "asking": return "your question is reading these documents now; what it reads is kept for the next one.";
    case "answered": return r.tokens
      ? `done: your question read these documents (${num(r.tokens)} tokens), so the next one starts from them.`
      : "done: your question read these documents, so the next one starts from them.";
    case "already": return "done: these documents were read before (by a question or a read-ahead), so the answer starts from them.";
    case "queued": return "waiting for the model (questions and batches go first).";
    case "reading": return `${of} read, so the first answer starts warm.`;
    case "yielded": return `paused at ${of} while the model answers others; it goes on when the model is idle.`;
    case "done": return `done: ${num(r.tokens_done)} tokens read before the question, so the answer starts from them.`;
    case "stopped": return `stopped: ${r.reason || "a document was deleted"}.`;
    case "failed": return `failed: ${r.reason || "the model could not read the documents"}.`;
    default: return "";
  }
}

function showReadAhead(r) {
  const line = $("plan-readahead");
  const words = r && r.state !== "off" ? readAheadWords(r) : "";
  line.hidden = !words;
  line.dataset.state = r?.state || "";
  line.replaceChildren(el("strong", {}, "Read-ahead: "), words);
}

const pause = (ms) => new Promise((done) => setTimeout(done, ms));

/** Drop the read-ahead this page asked for (the choice changed to nothing, or a question read the set):
 * the server stops reading what nobody is about to ask. */
export async function dropReadAhead() {
  if (!ahead.held) return;
  ahead.held = false;
  try {
    await api("/api/read-ahead", { method: "DELETE" });
  } catch {
    /* read-ahead is a help, never an error on the page */
  }
}

/** Start reading the chosen documents while the person types (the service's read-ahead, lowest priority),
 * once the choice has rested a moment, and say how far it has got until it is done or the choice changes.
 * Only the set ticked now reads ahead: starting it replaces this person's earlier set on the server. */
async function readAhead(seq, body, p, key) {
  ahead.key = key;
  if (p.backend === "remote" || !(await readAheadEnabled()) || seq !== plan.seq) return;
  if (p.snapshot || p.already_read || ahead.read.has(key)) {
    dropReadAhead(); // whatever was reading for an earlier choice stops
    // a snapshot is what the Reading line already speaks of
    showReadAhead(ahead.read.has(key) ? { state: "answered" } : p.snapshot ? null : { state: "already" });
    return;
  }
  await pause(READ_AHEAD_PAUSE_MS);
  if (seq !== plan.seq || ahead.asking === key) return;
  try {
    let r = await api("/api/read-ahead?replace=true", { method: "POST", body });
    ahead.held = true;
    while (seq === plan.seq && ahead.asking !== key) {
      showReadAhead(r);
      if (!["queued", "reading", "yielded"].includes(r.state)) return;
      await pause(READ_AHEAD_POLL_MS);
      if (seq !== plan.seq || ahead.asking === key) return;
      const all = await api("/api/read-ahead");
      r = (all.sets || []).find((x) => sameIds(x.document_ids, body.document_ids) && (!body.mode || x.mode === body.mode)
        && (!body.model || x.model === body.model)) || r;
    }
  } catch {
    if (seq === plan.seq) showReadAhead(null);  // read-ahead is a help, never an error on the page
  }
}

/** A question on the choice `key` is being answered: it reads the set itself (ahead of any read-ahead),
 * so the plan says so instead of "waiting for the model". */
export function readAheadAsking(key) {
  ahead.asking = key;
  if (key === ahead.key && ahead.enabled) showReadAhead({ state: "asking" });
}

/** The question ended. Answered: the set is read (the next question starts from it), so any read-ahead of
 * it is dropped and the plan says done. Stopped or failed: the read-ahead goes on as before. */
export function readAheadAnswered(answer) {
  const key = ahead.asking;
  ahead.asking = null;
  if (!answer) {
    if (key === ahead.key) updatePlan();
    return;
  }
  ahead.read.add(key);
  dropReadAhead();
  if (key !== ahead.key || !ahead.enabled) return;
  const t = answer.timings || {};
  const tokens = (t.prefill_tokens || 0) + (t.cached_tokens || 0);
  showReadAhead({ state: "answered", tokens });
}

/** The page is left: its read-ahead is dropped (keepalive: the request outlives the page). */
function dropOnLeave() {
  if (!ahead.held) return;
  const key = apiKey();
  try {
    fetch("/api/read-ahead", { method: "DELETE", keepalive: true, headers: key ? { "x-api-key": key } : {} });
  } catch {
    /* the server keeps it until it is read; nothing else waits on it */
  }
}

export function clearPlan(text, kind = "") {
  plan.tokens = null;
  setStatus($("plan-text"), text, kind);
  $("plan-text").classList.toggle("muted", kind === "");
  $("plan-reason").hidden = true;
  $("plan-reading").hidden = true;
  $("plan-readahead").hidden = true;
  $("plan-more").hidden = true;
}

/** Forget any plan on its way (a session's stored plan is shown instead). */
export const skipPendingPlan = () => plan.seq++;

export async function updatePlan() {
  const seq = ++plan.seq;
  const body = choice();
  const key = choiceKey();
  if (!body.document_ids.length) {
    clearPlan("Choose one or more documents to see how they will be read.");
    ahead.key = null;
    dropReadAhead(); // nothing ticked: nothing reads ahead
    return;
  }
  clearPlan("Working out how to read the chosen documents…");
  try {
    const p = await api("/api/plan", { method: "POST", body });
    if (seq === plan.seq) {
      showPlan({ ...p, document_ids: body.document_ids });
      readAhead(seq, body, p, key);
    }
  } catch (err) {
    if (seq === plan.seq) {
      clearPlan(err.message, "error");
      dropReadAhead();
    }
  }
}

export function setUpPlan({ onChange, onReadme }) {
  plan.onReadme = onReadme;
  window.addEventListener("pagehide", dropOnLeave);
  $("model").addEventListener("change", () => {
    showModelNote();
    setModelKey(modelKey());
    onChange();
  });
  $("mode").addEventListener("change", onChange);
}
