// Documents: the list with its choice boxes, uploads (with progress and an encrypted PDF's password), deletes.
import { api, uploadFile } from "./api.js";
import { $, el, num, plural, setStatus, userText } from "./dom.js";

const docs = {
  list: [], // as listed by the server
  checked: new Set(), // chosen document ids
  model: "", // the chosen model's key (plan.js modelKey): exact counts are per tokenizer
  onChange: () => {}, // the choice changed (plan and session label follow)
  onView: () => {}, // "View" pressed: (doc, button)
};

// Exact token counts, once a plan over a document alone has counted it, are kept in this browser per
// model and document (a document's text never changes and its id is never reused), so a reload shows
// them again instead of the upload-time estimate. The server keeps them only in memory, by set.
const EXACT_ITEM = "docqa.exactTokens";
const EXACT_KEEP = 500;

function exactCounts() {
  try {
    return JSON.parse(localStorage.getItem(EXACT_ITEM) || "{}") || {};
  } catch {
    return {};
  }
}

function exactCount(id, model = docs.model) {
  const n = exactCounts()[`${model}\u0000${id}`];
  return typeof n === "number" ? n : null;
}

export const documents = () => docs.list;
export const documentById = (id) => docs.list.find((d) => d.id === id);
export const selectedIds = () => docs.list.filter((d) => docs.checked.has(d.id)).map((d) => d.id);
export const forget = (id) => docs.checked.delete(id);

/** Choose exactly `ids` (those that still exist); returns how many of them are gone. */
export function choose(ids) {
  const known = new Set(docs.list.map((d) => d.id));
  docs.checked = new Set(ids.filter((d) => known.has(d)));
  for (const box of $("documents").querySelectorAll("input[type=checkbox]")) box.checked = docs.checked.has(box.value);
  return ids.length - docs.checked.size;
}

/** The plan counted this one document exactly (for `model`): the estimate in its line gives way to the count. */
export function setExactTokens(id, tokens, model = docs.model) {
  const all = exactCounts();
  all[`${model}\u0000${id}`] = tokens;
  const keys = Object.keys(all);
  for (const k of keys.slice(0, Math.max(0, keys.length - EXACT_KEEP))) delete all[k];
  try {
    localStorage.setItem(EXACT_ITEM, JSON.stringify(all));
  } catch {
    /* storage full or off: the count shows until the page is left */
  }
  if (model === docs.model) showUnits(id);
}

function showUnits(id) {
  const meta = $("documents").querySelector(`li.doc[data-id="${CSS.escape(id)}"] .meta`);
  const doc = documentById(id);
  if (meta && doc) meta.textContent = documentUnits(doc);
}

/** The model changed: each document's line shows its count for that model (exact where one is known). */
export function setModelKey(model) {
  docs.model = model;
  for (const d of docs.list) showUnits(d.id);
}

export function tokenWords(doc) {
  const exact = exactCount(doc.id);
  return exact ? `${num(exact)} tokens (exact, with instructions)` : `≈${num(doc.token_estimate)} tokens (estimate)`;
}

export function documentUnits(doc) {
  const parts = [doc.kind];
  if (doc.n_pages) parts.push(plural(doc.n_pages, "page"));
  parts.push(plural(doc.n_sections, "section"));
  parts.push(tokenWords(doc));
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

function documentItem(doc) {
  const id = `doc-${doc.id}`;
  const box = el("input", { type: "checkbox", id, value: doc.id });
  box.checked = docs.checked.has(doc.id);
  box.addEventListener("change", () => {
    if (box.checked) docs.checked.add(doc.id);
    else docs.checked.delete(doc.id);
    docs.onChange();
  });
  const view = el("button", { type: "button", class: "small", "aria-label": `View ${doc.filename}` }, "View");
  view.addEventListener("click", () => docs.onView(doc, view));
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

export async function loadDocuments() {
  try {
    docs.list = await api("/api/documents");
  } catch (err) {
    setStatus($("documents-empty"), `The documents could not be listed: ${err.message}`, "error");
    return;
  }
  const known = new Set(docs.list.map((d) => d.id));
  for (const id of [...docs.checked]) if (!known.has(id)) docs.checked.delete(id);
  $("documents").replaceChildren(...docs.list.map(documentItem));
  $("documents-fieldset").hidden = docs.list.length === 0;
  $("documents-empty").hidden = docs.list.length > 0;
}

async function deleteDocument(doc) {
  if (!window.confirm(`Delete ${doc.filename}? Sessions over it can no longer be asked.`)) return;
  const line = el("li", {}, userText("bdi", doc.filename), " — ");
  $("upload-results").replaceChildren(line);
  try {
    await api(`/api/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
    line.append("deleted.");
    docs.checked.delete(doc.id);
  } catch (err) {
    line.classList.add("error");
    line.append(`not deleted: ${err.message}`);
  }
  await loadDocuments();
  docs.onChange();
}

function showResult(line, file, status, body) {
  const name = userText("bdi", file.name, { class: "filename" });
  line.classList.remove("pending");
  if (status === 200 || status === 201) {
    docs.checked.add(body.id);
    line.classList.add("ok");
    line.replaceChildren(name, ` — ${status === 200 ? "already stored" : "stored"}: ${documentUnits(body)}`,
      skippedDetails(body.skipped) ?? "");
  } else if (body?.extra?.password) {
    // the server's sentence is written for every client (form fields, the CLI); the page asks in its own words
    line.classList.add("error");
    const words = body.extra.password === "wrong"
      ? "this password does not open it. Check the password and try again."
      : "it is an encrypted PDF. Enter its password to open it; docqa uses it only to read the file and never stores it.";
    line.replaceChildren(name, " — ", userText("span", words, { class: "reason" }), passwordForm(file, line));
  } else {
    line.classList.add("error");
    line.replaceChildren(name, " — refused: ", userText("span", body?.detail || `error ${status}`, { class: "reason" }));
  }
}

let passwordFields = 0;

/** An encrypted PDF was refused: ask for its password and send the file again with it (never kept here). */
function passwordForm(file, line) {
  const id = `pdf-password-${++passwordFields}`;
  const input = el("input", { type: "password", id, autocomplete: "off" });
  const form = el("form", { class: "password-form" },
    el("label", { for: id }, "Password for ", userText("bdi", file.name)), input, el("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const password = input.value;
    input.value = "";
    line.className = "pending";
    line.replaceChildren(userText("bdi", file.name, { class: "filename" }), " — opening…");
    const { status, body } = await uploadFile(file, () => {}, { password });
    showResult(line, file, status, body);
    if (status === 200 || status === 201) {
      await loadDocuments();
      docs.onChange();
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
    showResult(line, file, status, body);
  }
  button.disabled = false;
  $("file").value = "";
  setTimeout(() => {
    bar.hidden = percent.hidden = true;
  }, 1500);
  await loadDocuments();
  docs.onChange();
}

export function setUpDocuments({ onChange, onView }) {
  docs.onChange = onChange;
  docs.onView = onView;
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
