// The upload-and-ask page. Everything the server or the model says is inserted as text nodes
// (textContent / append), never as HTML; every element showing such text has dir="auto".
import { api, ApiError, apiKey, download, onUnauthorized, postEvents, setApiKey, uploadFile } from "./api.js";
import { bytes, duration, el, findQuote, marked, num, plural, userText } from "./dom.js";

const $ = (id) => document.getElementById(id);
const SECTION_PAGE = 200; // sections fetched per request when looking for a citation
const VIEW_PAGE = 20; // sections shown per "Show more" in the document viewer

const state = {
  documents: [], // as listed by the server
  checked: new Set(), // chosen document ids
  session: null, // the open session (with messages)
  sessionKey: null, // the choice (documents, model, mode) the open session was made for
  planSeq: 0,
  asking: null, // AbortController of the question in flight
  sections: new Map(), // document id → Map(offset → page of sections)
  viewerReturn: null, // element to focus when the viewer closes
  viewerMore: null, // loads the next page in the document viewer
  batch: null, // {id, timer}
};

// ---- helpers ------------------------------------------------------------------------------------

function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.classList.toggle("error", kind === "error");
  node.classList.toggle("ok", kind === "ok");
}

const documentById = (id) => state.documents.find((d) => d.id === id);
const selectedIds = () => state.documents.filter((d) => state.checked.has(d.id)).map((d) => d.id);
const choiceKey = () => JSON.stringify([selectedIds(), $("model").value, $("mode").value]);

function choice() {
  const body = { document_ids: selectedIds() };
  if ($("model").value) body.model = $("model").value;
  if ($("mode").value) body.mode = $("mode").value;
  return body;
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`); // the server writes UTC
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function documentUnits(doc) {
  const parts = [doc.kind];
  if (doc.n_pages) parts.push(plural(doc.n_pages, "page"));
  parts.push(plural(doc.n_sections, "section"));
  parts.push(`≈${num(doc.token_estimate)} tokens`);
  const ocr = doc.meta?.ocr;
  if (ocr?.pages?.length) parts.push(`${plural(ocr.pages.length, "page")} read by OCR (${ocr.langs}, mean confidence ${ocr.mean_confidence} %)`);
  if (doc.meta?.revisions) parts.push("tracked changes: current text");
  if (doc.parser === "pypdfium2") parts.push("read by the fallback PDF parser");
  return parts.join(" · ");
}

function skippedDetails(skipped) {
  if (!skipped?.length) return null;
  return el(
    "details",
    { class: "skipped" },
    el("summary", {}, `${plural(skipped.length, "file")} skipped`),
    el("ul", {}, skipped.map((s) => el("li", {}, userText("bdi", s.path, { class: "path" }), ": ", userText("span", s.reason)))),
  );
}

// ---- documents ----------------------------------------------------------------------------------

function documentItem(doc) {
  const id = `doc-${doc.id}`;
  const box = el("input", { type: "checkbox", id, value: doc.id });
  box.checked = state.checked.has(doc.id);
  box.addEventListener("change", () => {
    if (box.checked) state.checked.add(doc.id);
    else state.checked.delete(doc.id);
    choiceChanged();
  });
  const view = el("button", { type: "button", class: "small", "aria-label": `View ${doc.filename}` }, "View");
  view.addEventListener("click", () => openDocument(doc, view));
  const remove = el("button", { type: "button", class: "small quiet", "aria-label": `Delete ${doc.filename}` }, "Delete");
  remove.addEventListener("click", () => deleteDocument(doc));
  return el(
    "li",
    { class: "doc", "data-id": doc.id },
    box,
    el(
      "div",
      { class: "doc-body" },
      el("label", { for: id }, userText("bdi", doc.filename, { class: "filename" })),
      el("span", { class: "meta" }, documentUnits(doc)),
      skippedDetails(doc.skipped),
    ),
    el("div", { class: "doc-actions" }, view, remove),
  );
}

async function loadDocuments() {
  try {
    state.documents = await api("/api/documents");
  } catch (err) {
    setStatus($("documents-empty"), `The documents could not be listed: ${err.message}`, "error");
    return;
  }
  const known = new Set(state.documents.map((d) => d.id));
  for (const id of [...state.checked]) if (!known.has(id)) state.checked.delete(id);
  $("documents").replaceChildren(...state.documents.map(documentItem));
  $("documents-fieldset").hidden = state.documents.length === 0;
  $("documents-empty").hidden = state.documents.length > 0;
}

async function deleteDocument(doc) {
  if (!window.confirm(`Delete ${doc.filename}? Sessions over it can no longer be asked.`)) return;
  const line = el("li", {}, userText("bdi", doc.filename), " — ");
  $("upload-results").replaceChildren(line);
  try {
    await api(`/api/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
    line.append("deleted.");
    state.checked.delete(doc.id);
    state.sections.delete(doc.id);
  } catch (err) {
    line.classList.add("error");
    line.append(`not deleted: ${err.message}`);
  }
  await loadDocuments();
  choiceChanged();
}

/** An encrypted PDF was refused: ask for its password and send the file again with it (never kept here). */
function passwordForm(file, line) {
  const input = el("input", { type: "password", autocomplete: "off", "aria-label": `Password for ${file.name}` });
  const form = el("form", { class: "password-form" }, input, " ", el("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = input.value;
    input.value = "";
    line.className = "pending";
    line.replaceChildren(userText("bdi", file.name, { class: "filename" }), " — opening…");
    const { status, body } = await uploadFile(file, () => {}, { password });
    const name = userText("bdi", file.name, { class: "filename" });
    line.classList.remove("pending");
    if (status === 200 || status === 201) {
      state.checked.add(body.id);
      line.classList.add("ok");
      line.replaceChildren(name, ` — ${status === 200 ? "already stored" : "stored"}: ${documentUnits(body)}`);
      await loadDocuments();
      choiceChanged();
    } else {
      line.classList.add("error");
      line.replaceChildren(name, " — refused: ", userText("span", body?.detail || `error ${status}`, { class: "reason" }));
      if (body?.extra?.password) line.append(passwordForm(file, line));
    }
  });
  setTimeout(() => input.focus(), 0);
  return form;
}

async function uploadFiles(fileList) {
  const files = [...fileList];
  const results = $("upload-results");
  if (!files.length) {
    results.replaceChildren(el("li", { class: "error" }, "Choose or drop one or more files first."));
    $("file").focus();
    return;
  }
  const bar = $("upload-progress");
  const percent = $("upload-percent");
  const button = $("upload-button");
  button.disabled = true;
  bar.hidden = percent.hidden = false;
  results.replaceChildren();
  const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
  let sent = 0;
  const show = (fraction) => {
    bar.value = Math.min(1, fraction);
    percent.textContent = `${Math.round(bar.value * 100)} %`;
  };
  show(0);
  for (const file of files) {
    const line = el("li", { class: "pending" }, userText("bdi", file.name, { class: "filename" }), " — uploading…");
    results.append(line);
    const { status, body } = await uploadFile(file, (loaded, size) => show((sent + (file.size * loaded) / size) / total));
    sent += file.size;
    show(sent / total);
    line.classList.remove("pending");
    const name = userText("bdi", file.name, { class: "filename" });
    if (status === 200 || status === 201) {
      state.checked.add(body.id);
      line.classList.add("ok");
      line.replaceChildren(
        name,
        ` — ${status === 200 ? "already stored" : "stored"}: ${documentUnits(body)}`,
        skippedDetails(body.skipped) ?? "",
      );
    } else {
      line.classList.add("error");
      line.replaceChildren(name, " — refused: ", userText("span", body?.detail || `error ${status}`, { class: "reason" }));
      if (body?.extra?.password) line.append(passwordForm(file, line));
    }
  }
  button.disabled = false;
  $("file").value = "";
  setTimeout(() => {
    bar.hidden = percent.hidden = true;
  }, 1500);
  await loadDocuments();
  choiceChanged();
}

function setUpDropzone() {
  const zone = $("dropzone");
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault()); // no navigating to a dropped file
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    uploadFiles(e.dataTransfer.files);
  });
  $("upload-form").addEventListener("submit", (e) => {
    e.preventDefault();
    uploadFiles($("file").files);
  });
}

// ---- models and the plan ------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  try {
    const models = await api("/api/models");
    select.replaceChildren(
      ...models.map((m) =>
        el(
          "option",
          { value: m.name, disabled: Boolean(m.error) },
          m.error ? `${m.name} (unusable: ${m.error})` : `${m.name} · ${num(m.n_ctx_train)} ctx`,
        ),
      ),
    );
    const usable = models.find((m) => !m.error);
    if (usable) select.value = usable.name;
  } catch (err) {
    select.replaceChildren(el("option", { value: "" }, "server default"));
    setStatus($("plan-text"), `The models could not be listed: ${err.message}`, "error");
  }
}

const capitalised = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

function showPlan(plan) {
  setStatus($("plan-text"), capitalised(plan.summary || `${plan.mode}, ${num(plan.prompt_tokens)} tokens`) + ".");
  $("plan-text").classList.remove("muted");
  const reason = $("plan-reason");
  reason.hidden = !plan.reason || (plan.summary || "").includes(plan.reason);
  reason.textContent = plan.reason ? `Why: ${plan.reason}.` : "";
  const rows = [
    ["Mode", plan.mode === "whole" ? "whole document in one context" : "chunked map-reduce"],
    ["Document tokens", num(plan.prompt_tokens)],
    ["Context", `${num(plan.n_ctx)} tokens${plan.yarn_factor ? ` (YaRN ×${plan.yarn_factor} over ${num(plan.n_ctx_train)})` : ""}`],
    ["KV cache", `${bytes(plan.kv_bytes)} (${plan.type_k})`],
    ["Memory", `${bytes(plan.needed_bytes)} needed of ${bytes(plan.available_bytes)} available`],
  ];
  if (plan.mode === "chunked") rows.push(["Chunks", `${num(plan.n_chunks)} of ${num(plan.chunk_ctx)} tokens`]);
  $("plan-numbers").replaceChildren(...rows.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  $("plan-numbers").hidden = false;
}

function clearPlan(text, kind = "") {
  setStatus($("plan-text"), text, kind);
  $("plan-text").classList.toggle("muted", kind === "");
  $("plan-reason").hidden = true;
  $("plan-numbers").hidden = true;
}

async function updatePlan() {
  const seq = ++state.planSeq;
  const body = choice();
  if (!body.document_ids.length) {
    clearPlan("Choose one or more documents to see how they will be read.");
    return;
  }
  clearPlan("Working out how to read the chosen documents…");
  try {
    const plan = await api("/api/plan", { method: "POST", body });
    if (seq === state.planSeq) showPlan(plan);
  } catch (err) {
    if (seq === state.planSeq) clearPlan(err.message, "error");
  }
}

function choiceChanged() {
  updatePlan();
  updateSessionLabel();
}

// ---- sessions -----------------------------------------------------------------------------------

function updateSessionLabel() {
  const label = $("session-label");
  label.replaceChildren();
  if (!state.session) {
    label.append("A new session starts with your first question.");
  } else if (selectedIds().length && choiceKey() !== state.sessionKey) {
    label.append("You changed the documents or model: your next question starts a new session.");
  } else {
    label.append("Session: ", userText("bdi", state.session.title, { class: "title" }), ` · ${state.session.mode}`);
  }
}

async function loadSessions() {
  let sessions;
  try {
    sessions = await api("/api/sessions");
  } catch (err) {
    setStatus($("sessions-empty"), `The sessions could not be listed: ${err.message}`, "error");
    return;
  }
  $("sessions-empty").hidden = sessions.length > 0;
  $("sessions").replaceChildren(
    ...sessions.map((s) => {
      const button = el(
        "button",
        { type: "button", class: "session", "data-id": s.id, "aria-current": s.id === state.session?.id ? "true" : undefined },
        userText("span", s.title, { class: "title" }),
        el("span", { class: "meta" }, [when(s.updated_at), s.mode].filter(Boolean).join(" · ")),
      );
      button.addEventListener("click", () => openSession(s.id));
      return el("li", {}, button);
    }),
  );
}

async function openSession(id) {
  let session;
  try {
    session = await api(`/api/sessions/${encodeURIComponent(id)}`);
  } catch (err) {
    setStatus($("ask-status"), `The session could not be opened: ${err.message}`, "error");
    return;
  }
  state.session = session;
  const known = new Set(state.documents.map((d) => d.id));
  state.checked = new Set(session.document_ids.filter((d) => known.has(d)));
  for (const box of $("documents").querySelectorAll("input[type=checkbox]")) box.checked = state.checked.has(box.value);
  if ([...$("model").options].some((o) => o.value === session.model)) $("model").value = session.model;
  state.sessionKey = choiceKey();
  state.planSeq++;
  if (session.plan) showPlan(session.plan);
  const missing = session.document_ids.length - state.checked.size;
  setStatus($("ask-status"), missing ? `${plural(missing, "document")} of this session no longer exist.` : "", missing ? "error" : "");
  renderHistory(session.messages || []);
  updateSessionLabel();
  selectTab("ask");
  await loadSessions();
}

function newSession() {
  state.session = null;
  state.sessionKey = null;
  $("history").replaceChildren();
  setStatus($("ask-status"), "");
  updateSessionLabel();
  loadSessions();
  updatePlan();
  $("question").focus();
}

// ---- messages -----------------------------------------------------------------------------------

function paragraphs(from, to) {
  return to && to !== from ? `¶${from}–${to}` : `¶${from}`;
}

function citationWhere(c) {
  if (c.page !== null && c.page !== undefined) return `p. ${c.page}`;
  if (c.clause || (c.para_start !== null && c.para_start !== undefined)) {
    const clause = c.clause ? `§${c.clause}` : "";
    const paras = c.para_start !== null && c.para_start !== undefined ? paragraphs(c.para_start, c.para_end) : "";
    return [clause, paras].filter(Boolean).join(" ");
  }
  if (c.line_start === null || c.line_start === undefined) return "";
  return c.line_end && c.line_end !== c.line_start ? `lines ${c.line_start}–${c.line_end}` : `line ${c.line_start}`;
}

function citationChip(c) {
  const name = c.path || c.filename || "unknown source";
  const where = citationWhere(c);
  const title = [
    c.quote ? `“${c.quote}”` : "",
    c.verified ? "" : "This quote could not be found at the cited place.",
    c.origin === "matched" ? "Matched by docqa to the answer's wording." : "",
  ].filter(Boolean).join(" ");
  const chip = el(
    "button",
    { type: "button", class: c.verified ? "chip" : "chip unverified", title: title || undefined },
    userText("bdi", name, { class: "filename" }),
    where ? el("span", { class: "where" }, where) : "",
    c.verified ? "" : el("span", { class: "badge" }, "unverified"),
  );
  chip.addEventListener("click", () => openCitation(c, chip));
  return chip;
}

function timingsLine(msg) {
  const t = msg.timings || {};
  const parts = [];
  if (msg.mode) parts.push(msg.mode === "whole" ? "whole document" : msg.mode);
  if (typeof t.prefill_tokens === "number") {
    const cached = t.cached_tokens ? `, ${num(t.cached_tokens)} reused` : "";
    parts.push(`read ${num(t.prefill_tokens)} tokens in ${duration(t.prefill_s) || "0 s"}${cached}`);
  }
  if (t.prefix_source && t.prefix_source !== "evaluated") parts.push(`document from ${t.prefix_source} cache`);
  if (typeof t.tokens_per_s === "number") parts.push(`${t.tokens_per_s} tokens/s`);
  const cov = msg.coverage;
  if (cov && typeof cov === "object" && cov.chunks_total) {
    const contributing = Array.isArray(cov.contributing) && cov.contributing.length ? `; evidence from chunk ${cov.contributing.join(", ")}` : "";
    parts.push(`${num(cov.chunks_read ?? cov.chunks_total)} of ${num(cov.chunks_total)} chunks read${contributing}`);
  }
  return parts.join(" · ");
}

/** One assistant message: reading progress, reasoning, answer, citations, notes. */
function assistantView() {
  const readingLabel = el("span", { class: "reading-label" }, "Waiting for the model…");
  const bar = el("progress", { max: 1, "aria-label": "Reading progress" });
  const reading = el("div", { class: "reading", hidden: true }, readingLabel, bar);
  const thinking = userText("div", "", { class: "thinking-text" });
  const reasoning = el("details", { class: "reasoning", hidden: true }, el("summary", {}, "Reasoning"), thinking);
  const answer = userText("div", "", { class: "answer" });
  const cites = el("div", { class: "citations", hidden: true });
  const notes = el("ul", { class: "notes", hidden: true });
  const meta = el("p", { class: "meta" });
  const li = el("li", { class: "msg assistant" }, el("div", { class: "who" }, "docqa"), reading, reasoning, answer, cites, notes, meta);

  const finish = (msg) => {
    li.removeAttribute("aria-busy");
    answer.classList.remove("streaming");
    reading.hidden = true;
    answer.textContent = msg.content ?? msg.answer ?? "";
    if (msg.thinking) {
      thinking.textContent = msg.thinking;
      reasoning.hidden = false;
    }
    const list = msg.citations || [];
    cites.replaceChildren(...(list.length ? [el("span", { class: "cites-label" }, "Sources")] : []), ...list.map(citationChip));
    cites.hidden = list.length === 0;
    const noteList = [...(msg.notes || [])];
    if (msg.stop_reason === "length") noteList.push("The answer was cut off at its token limit.");
    notes.replaceChildren(...noteList.map((n) => userText("li", n)));
    notes.hidden = noteList.length === 0;
    meta.textContent = timingsLine(msg);
  };

  return {
    li,
    start() {
      li.setAttribute("aria-busy", "true");
      answer.classList.add("streaming");
      reading.hidden = false;
    },
    progress(p) {
      reading.hidden = false;
      if (p.phase === "map") {
        bar.max = p.chunks || 1;
        bar.value = p.chunk || 0;
        readingLabel.textContent = `Reading chunk ${num(p.chunk)} of ${num(p.chunks)}…`;
        return;
      }
      bar.max = p.tokens_total || 1;
      bar.value = p.tokens_done || 0;
      const rate = p.tokens_per_s ? ` · ${num(p.tokens_per_s)} tokens/s` : "";
      const eta = p.tokens_done < p.tokens_total && p.eta_s != null ? ` · about ${duration(p.eta_s)} left` : "";
      readingLabel.textContent =
        p.tokens_done >= p.tokens_total
          ? `Read ${num(p.tokens_total)} tokens${rate}. Writing the answer…`
          : `Reading the documents: ${num(p.tokens_done)} of ${num(p.tokens_total)} tokens${rate}${eta}`;
    },
    thinking(text) {
      reasoning.hidden = false;
      thinking.append(text);
    },
    token(text) {
      if (!reading.hidden && bar.value >= bar.max) reading.hidden = true;
      answer.append(text);
    },
    done: finish,
    error(detail) {
      li.removeAttribute("aria-busy");
      answer.classList.remove("streaming");
      reading.hidden = true;
      li.classList.add("failed");
      answer.after(el("p", { class: "error", role: "alert" }, userText("span", detail)));
    },
  };
}

function userItem(text) {
  return el("li", { class: "msg user" }, el("div", { class: "who" }, "You"), userText("div", text, { class: "question-text" }));
}

function renderHistory(messages) {
  const items = [];
  for (const m of messages) {
    if (m.role === "user") items.push(userItem(m.content));
    else {
      const view = assistantView();
      view.done(m);
      items.push(view.li);
    }
  }
  $("history").replaceChildren(...items);
}

// ---- asking -------------------------------------------------------------------------------------

async function ensureSession() {
  const ids = selectedIds();
  if (state.session && (!ids.length || choiceKey() === state.sessionKey)) return state.session;
  if (!ids.length) throw new ApiError(0, "Choose at least one document first.");
  const session = await api("/api/sessions", { method: "POST", body: choice() });
  state.session = session;
  state.sessionKey = choiceKey();
  $("history").replaceChildren();
  showPlan(session.plan);
  updateSessionLabel();
  return session;
}

async function ask(event) {
  event.preventDefault();
  if (state.asking) return;
  const status = $("ask-status");
  const question = $("question").value.trim();
  if (!question) {
    setStatus(status, "Write a question first.", "error");
    $("question").focus();
    return;
  }
  const controller = new AbortController();
  state.asking = controller;
  $("ask-button").disabled = true;
  setStatus(status, "Opening the session…");
  let session;
  try {
    session = await ensureSession();
  } catch (err) {
    setStatus(status, err.message, "error");
    state.asking = null;
    $("ask-button").disabled = false;
    return;
  }
  const view = assistantView();
  $("history").append(userItem(question), view.li);
  view.start();
  $("question").value = "";
  $("stop-button").hidden = false;
  setStatus(status, "Answering…");
  let finished = false;
  try {
    const url = `/api/sessions/${encodeURIComponent(session.id)}/questions`;
    for await (const { event: kind, data } of postEvents(url, { question }, controller.signal)) {
      if (kind === "progress") view.progress(data);
      else if (kind === "thinking") view.thinking(data.text ?? "");
      else if (kind === "token") view.token(data.text ?? "");
      else if (kind === "done") {
        view.done(data);
        finished = true;
        setStatus(status, "Answered.", "ok");
      } else if (kind === "error") {
        view.error(data.detail || "The question failed.");
        finished = true;
        setStatus(status, "");
      }
    }
    if (!finished) {
      view.error("The answer stream ended before the answer was complete; nothing was stored.");
      setStatus(status, "");
    }
  } catch (err) {
    view.error(err.name === "AbortError" ? "Stopped. This question and its partial answer were not stored." : err.message);
    setStatus(status, "");
  } finally {
    state.asking = null;
    $("ask-button").disabled = false;
    $("stop-button").hidden = true;
    loadSessions();
  }
}

function setUpAsking() {
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
  });
  $("stop-button").addEventListener("click", () => state.asking?.abort());
  $("new-session").addEventListener("click", newSession);
  $("model").addEventListener("change", choiceChanged);
  $("mode").addEventListener("change", choiceChanged);
}

// ---- the source viewer --------------------------------------------------------------------------

async function sectionPage(docId, offset) {
  let pages = state.sections.get(docId);
  if (!pages) state.sections.set(docId, (pages = new Map()));
  if (!pages.has(offset)) {
    pages.set(offset, await api(`/api/documents/${encodeURIComponent(docId)}/sections?offset=${offset}&limit=${SECTION_PAGE}`));
  }
  return pages.get(offset);
}

function sameClause(a, b) {
  const key = (x) => (x || "").toLowerCase().replace(/[.)]+$/, "").split(/\s+/).join(" ");
  return key(a) === key(b);
}

function sectionMatches(s, c, filename) {
  if (c.page !== null && c.page !== undefined) return s.page === c.page;
  if (s.para_start !== null && s.para_start !== undefined) {
    if (!sameClause(s.clause, c.clause)) return false;
    if (c.para_start === null || c.para_start === undefined) return true;
    return s.para_start <= (c.para_end ?? c.para_start) && s.para_end >= c.para_start;
  }
  const path = s.path || filename;
  if (c.path && path !== c.path && !path.endsWith(`/${c.path}`) && !c.path.endsWith(`/${path}`)) return false;
  if (c.line_start === null || c.line_start === undefined || s.line_start === null) return true;
  const end = c.line_end ?? c.line_start;
  return s.line_start <= end && s.line_end >= c.line_start;
}

async function findSections(c, filename) {
  for (let offset = 0; ; offset += SECTION_PAGE) {
    const page = await sectionPage(c.document_id, offset);
    const found = page.items.filter((s) => sectionMatches(s, c, filename));
    if (found.length) return found;
    if (offset + SECTION_PAGE >= page.total) return [];
  }
}

function sectionWhere(s, filename) {
  if (s.page !== null && s.page !== undefined) {
    if (!s.ocr) return `Page ${s.page}`;
    const confidence = s.ocr_confidence === null ? "" : `, mean confidence ${s.ocr_confidence} %`;
    return `Page ${s.page} — recognised by OCR from a scan${confidence}`;
  }
  if (s.para_start !== null && s.para_start !== undefined) {
    return `${s.heading || "Before the first heading"} · ${paragraphs(s.para_start, s.para_end)}`;
  }
  const lines = s.line_start === s.line_end ? `line ${s.line_start}` : `lines ${s.line_start}–${s.line_end}`;
  return s.path && s.path !== filename ? `${s.path}, ${lines}` : capitalised(lines);
}

/** Character range of lines [from, to] (1-based, as in the document) inside a section's text. */
function lineRange(s, from, to) {
  if (s.line_start === null || from === null || from === undefined) return null;
  const lines = s.text.split("\n");
  const lo = Math.max(from, s.line_start) - s.line_start;
  const hi = Math.min(to ?? from, s.line_end) - s.line_start;
  if (lo > hi || lo >= lines.length) return null;
  const start = lines.slice(0, lo).reduce((n, l) => n + l.length + 1, 0);
  const end = start + lines.slice(lo, hi + 1).join("\n").length;
  return [start, end];
}

function sectionBlock(s, filename, citation) {
  let range = null;
  let kind = "";
  if (citation?.quote) {
    range = findQuote(s.text, citation.quote);
    kind = "quote";
  }
  if (!range && citation && citation.page === null) {
    range = s.para_start !== null && s.para_start !== undefined
      ? lineRange({ ...s, line_start: s.para_start, line_end: s.para_end }, citation.para_start, citation.para_end)
      : lineRange(s, citation.line_start, citation.line_end);
    kind = "lines";
  }
  const text = userText("pre", "", { class: "section-text" });
  text.append(...marked(s.text, range, { class: kind }));
  return el("article", { class: s.ocr ? "section ocr" : "section" }, userText("h3", sectionWhere(s, filename), { class: "section-where" }), text);
}

function showViewer(heading, opener) {
  const viewer = $("viewer");
  for (const chip of document.querySelectorAll(".chip.active")) chip.classList.remove("active");
  state.viewerReturn = opener;
  state.viewerMore = null;
  $("viewer-more").hidden = true;
  $("viewer-h").textContent = heading;
  $("viewer-where").replaceChildren("Loading…");
  $("viewer-body").replaceChildren();
  viewer.hidden = false;
  document.querySelector(".layout").classList.add("has-viewer");
}

function focusViewer(target) {
  const viewer = $("viewer");
  $("viewer-h").focus({ preventScroll: true });
  if (getComputedStyle(viewer).position === "sticky") {
    // Beside the answer: the page stays where it is; the viewer scrolls to the highlight inside itself.
    const top = target ? target.getBoundingClientRect().top - viewer.getBoundingClientRect().top + viewer.scrollTop : 0;
    viewer.scrollTop = Math.max(0, top - viewer.clientHeight / 3);
    const box = viewer.getBoundingClientRect();
    if (box.bottom < 0 || box.top > window.innerHeight) viewer.scrollIntoView({ block: "start" });
  } else {
    (target || viewer).scrollIntoView({ block: target ? "center" : "start" });
  }
}

async function openCitation(c, chip) {
  showViewer("Cited source", chip);
  chip.classList.add("active");
  const where = $("viewer-where");
  const doc = documentById(c.document_id);
  const filename = c.filename || doc?.filename || c.path || "";
  if (!c.document_id) {
    where.replaceChildren(el("span", { class: "error" }, "This citation points to a place that is not in the documents."));
    focusViewer();
    return;
  }
  try {
    const sections = await findSections(c, filename);
    where.replaceChildren(userText("bdi", filename, { class: "filename" }), ` — ${citationWhere(c) || "whole document"}`);
    if (!c.verified) {
      where.append(el("br"), el("span", { class: "warning" }, "Unverified: docqa did not find this quote at the cited place."));
    }
    if (!sections.length) {
      $("viewer-body").replaceChildren(el("p", { class: "error" }, "The cited page or lines are not in this document."));
      focusViewer();
      return;
    }
    $("viewer-body").replaceChildren(...sections.map((s) => sectionBlock(s, filename, c)));
    if (c.quote && !$("viewer-body").querySelector("mark.quote")) {
      $("viewer-body").prepend(el("p", { class: "warning" }, "The quoted words do not occur in this part of the document."));
    }
    focusViewer($("viewer-body").querySelector("mark"));
  } catch (err) {
    where.replaceChildren(el("span", { class: "error" }, `The source could not be loaded: ${err.message}`));
    focusViewer();
  }
}

async function openDocument(doc, opener) {
  showViewer("Document", opener);
  const where = $("viewer-where");
  where.replaceChildren(userText("bdi", doc.filename, { class: "filename" }), ` — ${documentUnits(doc)}`);
  let offset = 0;
  const more = async () => {
    try {
      const page = await api(`/api/documents/${encodeURIComponent(doc.id)}/sections?offset=${offset}&limit=${VIEW_PAGE}`);
      $("viewer-body").append(...page.items.map((s) => sectionBlock(s, doc.filename, null)));
      offset += page.items.length;
      $("viewer-more").hidden = offset >= page.total;
    } catch (err) {
      $("viewer-body").append(el("p", { class: "error" }, `The sections could not be loaded: ${err.message}`));
    }
  };
  state.viewerMore = more;
  await more();
  focusViewer();
}

function setUpViewer() {
  $("viewer-close").addEventListener("click", () => {
    $("viewer").hidden = true;
    for (const chip of document.querySelectorAll(".chip.active")) chip.classList.remove("active");
    document.querySelector(".layout").classList.remove("has-viewer");
    state.viewerReturn?.focus();
  });
  $("viewer-more").addEventListener("click", () => state.viewerMore?.());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("viewer").hidden && $("viewer").contains(document.activeElement)) $("viewer-close").click();
  });
}

// ---- tabs ---------------------------------------------------------------------------------------

const TABS = ["ask", "batch"];

function selectTab(name, focus = false) {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
    if (on && focus) tab.focus();
  }
}

function setUpTabs() {
  for (const t of TABS) {
    const tab = $(`tab-${t}`);
    tab.addEventListener("click", () => selectTab(t));
    tab.addEventListener("keydown", (e) => {
      const i = TABS.indexOf(t);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      selectTab(TABS[(next + TABS.length) % TABS.length], true);
    });
  }
}

// ---- batches ------------------------------------------------------------------------------------

const BATCH_OPEN = new Set(["queued", "running"]);
const BATCH_WORDS = { queued: "Waiting", running: "Running", done: "Finished", failed: "Failed", cancelled: "Cancelled" };

function batchQuestions() {
  return $("batch-questions").value.split(/\r?\n/).map((q) => q.trim()).filter(Boolean);
}

function setName(ids) {
  const names = (ids || []).map((id) => documentById(id)?.filename).filter(Boolean);
  return names.length ? names.join(", ") : "the chosen documents";
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
  $("batch-label").textContent = `${word}: ${num(b.done || 0)} of ${num(total)} answered${extra.length ? `, ${extra.join(", ")}` : ""}`;
  setStatus($("batch-status"), b.error || "", b.error ? "error" : "");
  const open = BATCH_OPEN.has(b.status);
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
      userText("td", r.filename || setName(b.document_ids)),
      userText("td", r.answer || r.error || r.status, { class: r.error ? "error" : r.answer ? "" : "muted" }),
    ),
  );
  $("batch-results").tBodies[0].replaceChildren(...rows);
  $("batch-results").hidden = rows.length === 0;
  return open;
}

async function pollBatch() {
  const batch = state.batch;
  if (!batch) return;
  try {
    const b = await api(`/api/batches/${encodeURIComponent(batch.id)}`);
    if (state.batch !== batch) return;
    if (renderBatch(b)) batch.timer = setTimeout(pollBatch, 1000);
  } catch (err) {
    setStatus($("batch-status"), `The batch's progress could not be read: ${err.message}`, "error");
    batch.timer = setTimeout(pollBatch, 3000);
  }
}

async function runBatch(event) {
  event.preventDefault();
  const questions = batchQuestions();
  const ids = selectedIds();
  if (!ids.length) return setStatus($("batch-status"), "Choose at least one document above first.", "error");
  if (!questions.length) return setStatus($("batch-status"), "Write or load at least one question, one per line.", "error");
  if (state.batch?.timer) clearTimeout(state.batch.timer);
  $("batch-run").disabled = true;
  setStatus($("batch-status"), "Starting the batch…");
  try {
    const body = { ...choice(), questions, per_document: $("batch-per-document").checked };
    const created = await api("/api/batches", { method: "POST", body });
    state.batch = { id: created.id, timer: null };
    renderBatch({ total: questions.length, done: 0, document_ids: ids, ...created });
    pollBatch();
  } catch (err) {
    $("batch-run").disabled = false;
    setStatus($("batch-status"), err.message, "error");
  }
}

async function cancelBatch() {
  const batch = state.batch;
  if (!batch) return;
  clearTimeout(batch.timer);
  try {
    renderBatch(await api(`/api/batches/${encodeURIComponent(batch.id)}`, { method: "DELETE" }));
  } catch (err) {
    setStatus($("batch-status"), `The batch could not be cancelled: ${err.message}`, "error");
  }
}

async function downloadCsv() {
  const id = $("batch-csv").dataset.batch;
  if (!id) return;
  try {
    await download(`/api/batches/${encodeURIComponent(id)}/results?format=csv`, `batch-${id}.csv`);
  } catch (err) {
    setStatus($("batch-status"), `The CSV could not be downloaded: ${err.message}`, "error");
  }
}

function setUpBatch() {
  $("batch-form").addEventListener("submit", runBatch);
  $("batch-csv").addEventListener("click", downloadCsv);
  $("batch-cancel").addEventListener("click", cancelBatch);
  $("batch-file").addEventListener("change", async () => {
    const file = $("batch-file").files[0];
    if (!file) return;
    const text = (await file.text()).replace(/^\ufeff/, "");
    $("batch-questions").value = text;
    setStatus($("batch-status"), `Loaded ${plural(batchQuestions().length, "question")} from ${file.name}.`);
  });
}

// ---- the API key --------------------------------------------------------------------------------
// Asked for only when the server answers 401; in loopback mode (no keys configured) it never shows.

function needKey() {
  const rejected = Boolean(apiKey());
  setApiKey(null);
  const panel = $("access");
  const shown = !panel.hidden;
  panel.hidden = false;
  document.querySelector(".layout").inert = true;
  setStatus($("access-status"), rejected ? "The server did not accept this key. Check it and try again." : "", rejected ? "error" : "");
  if (!shown || rejected) $("api-key").focus();
}

/** False when the server wants a key it has not been given (the key panel is then shown). */
async function hasAccess() {
  try {
    await api("/api/sessions");
    return true;
  } catch (err) {
    return err.status !== 401; // unreachable or failing: the lists below say so
  }
}

async function loadAll() {
  await Promise.all([loadModels(), loadDocuments(), loadSessions()]);
  choiceChanged();
}

async function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) {
    setStatus($("access-status"), "Enter the API key first.", "error");
    $("api-key").focus();
    return;
  }
  setApiKey(key);
  setStatus($("access-status"), "Checking the key…");
  $("api-key-button").disabled = true;
  const ok = await hasAccess();
  $("api-key-button").disabled = false;
  if (!ok) return; // needKey() said why
  $("api-key").value = "";
  setStatus($("access-status"), "");
  $("access").hidden = true;
  document.querySelector(".layout").inert = false;
  await loadAll();
  $("file").focus();
}

function setUpAccess() {
  onUnauthorized(needKey);
  $("access-form").addEventListener("submit", useKey);
}

// ---- start --------------------------------------------------------------------------------------

setUpAccess();
setUpDropzone();
setUpAsking();
setUpViewer();
setUpTabs();
setUpBatch();
if (await hasAccess()) await loadAll();
document.body.dataset.ready = "true";
