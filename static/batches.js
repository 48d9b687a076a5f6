// Batches: run a list of questions, watch progress with an ETA, read the answers with their sources and
// grounding, download CSV; past batches are listed (they are kept by the server) and can be reopened.
import { api, download } from "./api.js";
import { $, capitalised, duration, el, num, plural, setStatus, userText, when } from "./dom.js";
import { documentById, selectedIds } from "./documents.js";
import { renderMarkdown } from "./markdown.js";
import { choice } from "./plan.js";
import { sourceChip } from "./conversation.js";

const BATCH_OPEN = new Set(["queued", "running"]);
const BATCH_WORDS = { queued: "Waiting", running: "Running", done: "Finished", failed: "Failed", cancelled: "Cancelled" };
const batch = { open: null }; // {id, timer}

function batchQuestions() {
  return $("batch-questions").value.split(/\r?\n/).map((q) => q.trim()).filter(Boolean);
}

function setName(ids) {
  const names = (ids || []).map((id) => documentById(id)?.filename).filter(Boolean);
  return names.length ? names.join(", ") : "the chosen documents";
}

const mean = (xs) => xs.reduce((a, x) => a + x, 0) / xs.length;
/** Whether an item read its documents itself (the set's first reading), rather than starting from what
 * an earlier item, a question or a read-ahead had read. */
const readItsDocuments = (t) => t.prefix_source === "evaluated" && (t.prefill_tokens || 0) > 0;

/** Time left for the items not answered yet. The first item of a document set reads the documents, which
 * can take most of the batch's time; the items after it start from that reading. So an item left counts
 * as a warm item (the mean of answered items that did not read their documents, or, before there is one,
 * the first items' time without their reading), plus a reading for each document set not read yet. */
export function batchEta(b) {
  const results = b.results || [];
  const done = results.filter((r) => r.status === "done" && typeof r.timings?.item_s === "number");
  const open = results.filter((r) => r.status === "queued" || r.status === "running");
  const left = typeof b.queued === "number" || typeof b.running === "number" ? (b.queued || 0) + (b.running || 0) : open.length;
  if (!done.length || !left) return null;
  const cold = done.filter((r) => readItsDocuments(r.timings));
  const warmTimes = done.filter((r) => !readItsDocuments(r.timings)).map((r) => r.timings.item_s);
  const warm = warmTimes.length ? mean(warmTimes)
    : mean(cold.map((r) => Math.max(0, r.timings.item_s - (r.timings.prefill_s || 0))));
  const reading = cold.length ? mean(cold.map((r) => Math.min(r.timings.item_s, r.timings.prefill_s || 0))) : 0;
  const read = new Set(done.map((r) => r.document_id || ""));
  const unread = new Set(open.map((r) => r.document_id || "").filter((d) => !read.has(d)));
  return warm * left + reading * unread.size;
}

function groundingCell(r) {
  const g = r.grounding || {};
  const claims = r.claims || [];
  const cell = el("td", { class: "grounding-cell" });
  if (typeof r.draft === "string" && r.draft) { // its sentences are the draft's, not an answer's: no count
    cell.append(el("span", { class: "g-count has-unsupported" },
      el("span", { class: "flag" }, "⚠ Withheld"), ": the documents do not support the model's answer"));
    return cell;
  }
  if (!claims.length) {
    cell.append(el("span", { class: "muted" }, r.status === "done" ? "no sentences checked" : "—"));
    return cell;
  }
  const unsupported = g.unsupported ?? claims.filter((c) => c.status === "unsupported").length;
  cell.append(el("span", { class: unsupported ? "g-count has-unsupported" : "g-count" },
    `${num(g.grounded ?? 0)} of ${plural(g.checked ?? claims.length, "sentence")} grounded`,
    unsupported ? el("span", { class: "flag" }, ` · ⚠ ${num(unsupported)} unsupported`) : ""));
  return cell;
}

function sourcesCell(r) {
  const cell = el("td", { class: "sources-cell" });
  const seen = new Set();
  const chips = [];
  const keyOf = (c) => `${c.document_id}:${c.page}:${c.path}:${c.line_start}:${c.line_end}`;
  for (const c of r.citations || []) {
    seen.add(keyOf(c));
    chips.push(sourceChip(c));
  }
  for (const claim of r.claims || []) {
    const p = claim.passage;
    if (!p) continue;
    const key = keyOf(p); // a passage already cited is shown once
    if (seen.has(key)) continue;
    seen.add(key);
    chips.push(sourceChip({ ...p, quote: p.quote || p.text, verified: true }, { label: "Passage", extraClass: " passage" }));
  }
  if (chips.length) cell.append(...chips);
  else cell.append(el("span", { class: "muted" }, "—"));
  return cell;
}

function renderBatch(b) {
  const total = b.total || 0;
  const finished = (b.done || 0) + (b.failed || 0) + (b.cancelled || 0);
  const bar = $("batch-progress");
  bar.max = total || 1;
  bar.value = finished;
  $("batch-status-box").hidden = false;
  const extra = [b.failed ? `${num(b.failed)} failed` : "", b.cancelled ? `${num(b.cancelled)} cancelled` : ""].filter(Boolean);
  const word = BATCH_WORDS[b.status] || capitalised(b.status || "");
  const open = BATCH_OPEN.has(b.status);
  const eta = open ? batchEta(b) : null;
  $("batch-label").textContent = `${word}: ${num(b.done || 0)} of ${num(total)} answered${extra.length ? `, ${extra.join(", ")}` : ""}`
    + (eta !== null ? ` · about ${duration(eta)} left` : "");
  setStatus($("batch-status"), b.error || "", b.error ? "error" : "");
  $("batch-cancel").hidden = !open;
  $("batch-run").disabled = open;
  const csv = $("batch-csv");
  csv.dataset.batch = b.id;
  csv.hidden = !(finished > 0 || !open);
  const rows = (b.results || b.items || []).map((r) =>
    el(
      "tr",
      { class: r.status },
      userText("td", r.question),
      userText("td", r.filename || setName(b.document_ids), { class: "filename-cell" }),
      r.answer
        ? el("td", { class: "answer markdown", dir: "auto" }, renderMarkdown(r.answer))
        : userText("td", r.error || r.status, { class: r.error ? "error" : "muted" }),
      groundingCell(r),
      sourcesCell(r),
    ),
  );
  $("batch-results").tBodies[0].replaceChildren(...rows);
  $("batch-results").hidden = rows.length === 0;
  return open;
}

async function pollBatch() {
  const current = batch.open;
  if (!current) return;
  try {
    const b = await api(`/api/batches/${encodeURIComponent(current.id)}`);
    if (batch.open !== current) return;
    if (renderBatch(b)) current.timer = setTimeout(pollBatch, 1000);
    else loadBatches();
  } catch (err) {
    setStatus($("batch-status"), `The batch's progress could not be read: ${err.message}`, "error");
    current.timer = setTimeout(pollBatch, 3000);
  }
}

function openBatch(id) {
  if (batch.open?.timer) clearTimeout(batch.open.timer);
  batch.open = { id, timer: null };
  for (const b of $("batch-list").querySelectorAll("button.open")) b.toggleAttribute("aria-current", b.dataset.id === id);
  return pollBatch();
}

export async function loadBatches() {
  let list;
  try {
    list = await api("/api/batches");
  } catch (err) {
    setStatus($("batch-list-empty"), `The batches could not be listed: ${err.message}`, "error");
    return;
  }
  $("batch-list-empty").hidden = list.length > 0;
  $("batch-list").replaceChildren(...list.map((b) => {
    const word = BATCH_WORDS[b.status] || capitalised(b.status || "");
    const open = el("button", { type: "button", class: "small open", "data-id": b.id,
      "aria-current": batch.open?.id === b.id ? "true" : undefined }, "Open");
    open.addEventListener("click", () => openBatch(b.id));
    const csv = el("button", { type: "button", class: "small", "aria-label": `Download the CSV of the batch of ${when(b.created_at)}` }, "CSV");
    csv.addEventListener("click", () => downloadCsv(b.id));
    const others = (b.n_questions || 0) - 1;
    const first = b.first_question
      ? el("span", { class: "batch-first" }, "“", userText("bdi", b.first_question), "”",
        others > 0 ? ` and ${plural(others, "other question")}` : "")
      : el("span", { class: "batch-first" }, plural(b.n_questions, "question"));
    open.setAttribute("aria-label", `Open the batch ${b.first_question ? `“${b.first_question}”` : ""} of ${when(b.created_at)}`);
    return el("li", { class: `batch-item ${b.status}` },
      el("div", { class: "batch-what" },
        first,
        el("span", { class: "batch-state" }, `${word} · ${num(b.done)} of ${num(b.total)} answered`),
        userText("span", `${plural(b.n_questions, "question")} over ${setName(b.document_ids)}`, { class: "batch-docs" }),
        el("span", { class: "meta" }, when(b.created_at))),
      el("div", { class: "batch-actions" }, open, csv));
  }));
}

async function runBatch(event) {
  event.preventDefault();
  const questions = batchQuestions();
  const ids = selectedIds();
  if (!ids.length) return setStatus($("batch-status"), "Choose at least one document first.", "error");
  if (!questions.length) return setStatus($("batch-status"), "Write or load at least one question, one per line.", "error");
  $("batch-run").disabled = true;
  setStatus($("batch-status"), "Starting the batch…");
  try {
    const body = { ...choice(), questions, per_document: $("batch-per-document").checked };
    const created = await api("/api/batches", { method: "POST", body });
    renderBatch({ total: questions.length, done: 0, document_ids: ids, ...created });
    await loadBatches();
    openBatch(created.id);
  } catch (err) {
    $("batch-run").disabled = false;
    setStatus($("batch-status"), err.message, "error");
  }
}

async function cancelBatch() {
  const current = batch.open;
  if (!current) return;
  clearTimeout(current.timer);
  try {
    renderBatch(await api(`/api/batches/${encodeURIComponent(current.id)}`, { method: "DELETE" }));
    loadBatches();
  } catch (err) {
    setStatus($("batch-status"), `The batch could not be cancelled: ${err.message}`, "error");
  }
}

async function downloadCsv(id = $("batch-csv").dataset.batch) {
  if (!id) return;
  try {
    await download(`/api/batches/${encodeURIComponent(id)}/results?format=csv`, `batch-${id}.csv`);
  } catch (err) {
    setStatus($("batch-status"), `The CSV could not be downloaded: ${err.message}`, "error");
  }
}

export function setUpBatches() {
  $("batch-form").addEventListener("submit", runBatch);
  $("batch-csv").addEventListener("click", () => downloadCsv());
  $("batch-cancel").addEventListener("click", cancelBatch);
  $("batch-file").addEventListener("change", async () => {
    const file = $("batch-file").files[0];
    if (!file) return;
    const text = (await file.text()).replace(/^\ufeff/, "");
    $("batch-questions").value = text;
    setStatus($("batch-status"), `Loaded ${plural(batchQuestions().length, "question")} from ${file.name}.`);
  });
}
