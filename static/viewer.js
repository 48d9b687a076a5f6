// The source viewer beside the answer (on a phone, a full-screen sheet): a cited passage highlighted and
// scrolled into view, labelled in words when it is only the nearest passage to an unsupported sentence;
// a whole document by page (PDF), by line with line numbers (text; code without wrapping, indentation
// intact, the numbers staying put when the code scrolls sideways), by heading (Word, HTML, Markdown) or
// as a file tree (zip). The viewer's head (its title, Close, where the passage is) stays in view while
// its body scrolls, and so does each file's heading. Right-to-left text keeps its direction (dir="auto").
import { api } from "./api.js";
import { $, capitalised, el, findQuote, userText } from "./dom.js";
import { documentById, documentUnits } from "./documents.js";
import { formatView, formatWhere, hasFormatView } from "./formats.js";
import { renderMarkdown } from "./markdown.js";

const SECTION_PAGE = 200; // sections fetched per request when looking for a citation
const VIEW_PAGE = 20; // sections shown per "Show more" in the document viewer
const PROSE = /\.(md|markdown|txt|rst|text)$/i;

const view = {
  sections: new Map(), // document id → Map(offset → page of sections)
  returnTo: null, // element to focus when the viewer closes
  more: null, // loads the next page in the document viewer
  stepper: () => null, // opener → {prev, next}: the answer's sentences before and after it (conversation.js)
};

/** conversation.js says how to step from a sentence's passage to the next one's (a cycle-free hook). */
export function setStepper(fn) {
  view.stepper = fn;
}

/** The bar at the bottom of the viewer: the previous and next sentences of the answer, and on a phone
 * "Back to the answer", all within a thumb's reach. */
function showSteps(opener, sheet) {
  const steps = view.stepper(opener) || {};
  for (const [id, step] of [["viewer-prev", steps.prev], ["viewer-next", steps.next]]) {
    const button = $(id);
    button.hidden = !step;
    button.textContent = step ? step.label : "";
    button.setAttribute("aria-label", step ? step.long : "");
    button.onclick = step ? () => step.open() : null;
  }
  $("viewer-back").hidden = !sheet;
  $("viewer-steps").hidden = !steps.prev && !steps.next && !sheet;
}

export const forgetDocument = (id) => view.sections.delete(id);

async function sectionPage(docId, offset) {
  let pages = view.sections.get(docId);
  if (!pages) view.sections.set(docId, (pages = new Map()));
  if (!pages.has(offset)) {
    pages.set(offset, await api(`/api/documents/${encodeURIComponent(docId)}/sections?offset=${offset}&limit=${SECTION_PAGE}`));
  }
  return pages.get(offset);
}

async function allSections(docId) {
  const out = [];
  for (let offset = 0; ; offset += SECTION_PAGE) {
    const page = await sectionPage(docId, offset);
    out.push(...page.items);
    if (offset + SECTION_PAGE >= page.total) return out;
  }
}

const paragraphs = (from, to) => (to && to !== from ? `¶${from}–${to}` : `¶${from}`);
const has = (v) => v !== null && v !== undefined;

/** Where a citation points, in words ("p. 3", "§4.2 ¶7", "lines 12–14"); `short`: lines as "L12–L14". */
export function citationWhere(c, { short = false } = {}) {
  if (has(c.page)) return `p. ${c.page}`;
  if (c.clause || has(c.para_start)) {
    const clause = c.clause ? `§${c.clause}` : "";
    const paras = has(c.para_start) ? paragraphs(c.para_start, c.para_end) : "";
    return [clause, paras].filter(Boolean).join(" ");
  }
  if (!has(c.line_start)) return "";
  const range = c.line_end && c.line_end !== c.line_start;
  if (short) return range ? `L${c.line_start}–L${c.line_end}` : `L${c.line_start}`;
  return range ? `lines ${c.line_start}–${c.line_end}` : `line ${c.line_start}`;
}

/** Consecutive sections of one file, by line, joined into one: the blank lines that the cut between
 * them fell on (trimmed off at upload) come back, so line 36 is followed by 37, not 38. */
export function joinSections(sections) {
  const out = [];
  for (const s of sections) {
    const prev = out.at(-1);
    const lines = (x) => has(x.line_start) && has(x.line_end) && !has(x.page) && !has(x.para_start);
    if (prev && lines(prev) && lines(s) && (prev.path || null) === (s.path || null) && s.line_start > prev.line_end) {
      out[out.length - 1] = { ...prev, line_end: s.line_end, text: prev.text + "\n".repeat(s.line_start - prev.line_end) + s.text };
    } else {
      out.push(s);
    }
  }
  return out;
}

function sameClause(a, b) {
  const key = (x) => (x || "").toLowerCase().replace(/[.)]+$/, "").split(/\s+/).join(" ");
  return key(a) === key(b);
}

function sectionMatches(s, c, filename) {
  if (has(c.page)) return s.page === c.page;
  if (has(s.para_start)) {
    if (!sameClause(s.clause, c.clause)) return false;
    if (!has(c.para_start)) return true;
    return s.para_start <= (c.para_end ?? c.para_start) && s.para_end >= c.para_start;
  }
  const path = s.path || filename;
  if (c.path && path !== c.path && !path.endsWith(`/${c.path}`) && !c.path.endsWith(`/${path}`)) return false;
  if (!has(c.line_start) || s.line_start === null) return true;
  const end = c.line_end ?? c.line_start;
  return s.line_start <= end && s.line_end >= c.line_start;
}

async function findSections(c, filename) {
  for (let offset = 0; ; offset += SECTION_PAGE) {
    const page = await sectionPage(c.document_id, offset);
    const found = page.items.filter((s) => sectionMatches(s, c, filename));
    if (found.length) return joinSections(found);
    if (offset + SECTION_PAGE >= page.total) return [];
  }
}

function sectionWhere(s, filename) {
  if (has(s.page)) {
    if (!s.ocr) return `Page ${s.page}`;
    const confidence = s.ocr_confidence === null ? "" : `, mean confidence ${s.ocr_confidence} %`;
    return `Page ${s.page} — recognised by OCR from a scan${confidence}`;
  }
  if (has(s.para_start)) return `${s.heading || "Before the first heading"} · ${paragraphs(s.para_start, s.para_end)}`;
  const lines = s.line_start === s.line_end ? `line ${s.line_start}` : `lines ${s.line_start}–${s.line_end}`;
  return s.path && s.path !== filename ? `${s.path}, ${lines}` : capitalised(lines);
}

/** Character range of lines [from, to] (numbered from `first`) inside `text`. */
function lineRange(text, first, last, from, to) {
  if (!has(first) || !has(from)) return null;
  const lines = text.split("\n");
  const lo = Math.max(from, first) - first;
  const hi = Math.min(to ?? from, last) - first;
  if (lo > hi || lo >= lines.length) return null;
  const start = lines.slice(0, lo).reduce((n, l) => n + l.length + 1, 0);
  return [start, start + lines.slice(lo, hi + 1).join("\n").length];
}

/** A PDF line broken with a hyphen ("adip-\niscing") joined back, for reading. */
export function dehyphenate(text) {
  return text.replace(/(\p{Ll})-\n(\p{Ll})/gu, "$1$2");
}

/** Nodes of `text` with [start, end) in a <mark>. */
function marked(text, range, attrs) {
  if (!range || range[1] <= 0 || range[0] >= text.length) return [document.createTextNode(text)];
  const [start, end] = [Math.max(0, range[0]), Math.min(text.length, range[1])];
  return [document.createTextNode(text.slice(0, start)), el("mark", attrs, text.slice(start, end)), document.createTextNode(text.slice(end))];
}

/** Lines as blocks, numbered. The number sits in a gutter of its own (drawn by CSS from data-n, so it is
 * not copied with the text); in code the gutter is sticky, so it stays beside its line when the box
 * scrolls sideways. `label`: words shown above the first highlighted line (what the highlight is). */
function numberedLines(text, first, prefix, range, markAttrs, label) {
  const out = [];
  let at = 0;
  text.split("\n").forEach((line, i) => {
    const lineRangeHere = range ? [range[0] - at, range[1] - at] : null;
    const hit = lineRangeHere && lineRangeHere[1] > 0 && lineRangeHere[0] < Math.max(line.length, 1);
    const n = `${prefix}${first + i}`;
    if (hit && label && !out.some((x) => x.classList.contains("hit"))) out.push(label);
    out.push(el("span", { class: hit ? "line hit" : "line", "data-n": n },
      el("span", { class: "ln", "data-n": n, "aria-hidden": "true" }),
      ...(hit ? marked(line, lineRangeHere, markAttrs) : [line || "\u200b"])));
    at += line.length + 1;
  });
  return out;
}

/** The words at a highlight opened from a sentence's grounding: support, or only the nearest passage. */
function highlightLabel(c) {
  if (!c?.role) return null;
  const nearest = c.role === "nearest";
  const words = nearest
    ? `Nearest passage, not support: it does not back ${c.sentence ? `sentence ${c.sentence}` : "the sentence"}.`
    : `Passage supporting ${c.sentence ? `sentence ${c.sentence}` : "the sentence"}.`;
  return el("span", { class: `mark-label ${nearest ? "nearest" : "support"}`, role: "note" },
    el("span", { "aria-hidden": "true" }, nearest ? "⚠ " : "✓ "), words);
}

const isArchive = (doc) => doc?.kind === "archive" || doc?.kind === "zip";

function isCode(s, doc) {
  if (doc?.kind === "code") return true;
  return isArchive(doc) && s.path && !PROSE.test(s.path);
}

function sectionBlock(s, filename, citation, doc) {
  const pdf = has(s.page);
  let text = pdf ? dehyphenate(s.text) : s.text;
  let range = null;
  let kind = "";
  if (citation?.quote) {
    range = findQuote(text, citation.quote);
    if (!range && pdf && (range = findQuote(s.text, citation.quote))) text = s.text; // quoted with the hyphen
    kind = "quote";
  }
  if (!range && citation && !has(citation.page)) {
    range = has(s.para_start)
      ? lineRange(text, s.para_start, s.para_end, citation.para_start, citation.para_end)
      : lineRange(text, s.line_start, s.line_end, citation.line_start, citation.line_end);
    kind = "lines";
  }
  if (kind && citation?.role === "nearest") kind += " nearest";
  const label = range ? highlightLabel(citation) : null;
  const code = isCode(s, doc);
  const box = userText("pre", "", { class: `section-text${code ? " code" : ""}${pdf ? " page" : ""}`, tabindex: code ? "0" : undefined });
  if (has(s.para_start)) box.append(...numberedLines(text, s.para_start, "¶", range, { class: kind }, label));
  else if (has(s.line_start)) {
    const lines = numberedLines(text, s.line_start, "", range, { class: kind }, label);
    box.append(...(code ? [el("span", { class: "code-lines" }, ...lines)] : lines));
  }
  else box.append(...(label ? [label] : []), ...marked(text, range, { class: kind }));
  if (code) box.setAttribute("aria-label", `${s.path || filename}, lines ${s.line_start}–${s.line_end}`);
  return el("article", { class: s.ocr ? "section ocr" : "section", "data-ordinal": s.ordinal },
    userText("h3", sectionWhere(s, filename), { class: "section-where" }), box);
}

/** On a phone the viewer is a full-screen sheet: the page under it neither scrolls nor takes focus. */
const isSheet = () => getComputedStyle($("viewer")).position === "fixed";

function showViewer(heading, opener) {
  for (const chip of document.querySelectorAll(".chip.active")) chip.classList.remove("active");
  view.returnTo = opener;
  view.more = null;
  $("viewer-more").hidden = true;
  $("viewer-h").textContent = heading;
  $("viewer-where").replaceChildren("Loading…");
  $("viewer-body").replaceChildren();
  $("viewer").hidden = false;
  document.querySelector(".layout").classList.add("has-viewer");
  const sheet = isSheet();
  document.documentElement.classList.toggle("sheet-open", sheet);
  for (const part of document.querySelectorAll(".layout > .side, .layout > .work")) part.inert = sheet;
  showSteps(opener, sheet);
}

export function closeViewer({ returnFocus = true } = {}) {
  if ($("viewer").hidden) return;
  $("viewer").hidden = true;
  for (const chip of document.querySelectorAll(".chip.active")) chip.classList.remove("active");
  document.querySelector(".layout").classList.remove("has-viewer");
  document.documentElement.classList.remove("sheet-open");
  for (const part of document.querySelectorAll(".layout > .side, .layout > .work")) part.inert = false;
  if (returnFocus) view.returnTo?.focus();
  view.returnTo = null;
}

/** Scroll the viewer's body (not the page) so `target` is a third of the way down, and, in code that
 * scrolls sideways, so the highlight is in view beside the line numbers. */
function focusViewer(target) {
  const viewer = $("viewer");
  const scroller = $("viewer-scroll");
  $("viewer-h").focus({ preventScroll: true });
  if (target) {
    const top = target.getBoundingClientRect().top - scroller.getBoundingClientRect().top + scroller.scrollTop;
    const sticky = target.closest("article")?.querySelector(".section-where")?.offsetHeight || 0;
    scroller.scrollTop = Math.max(0, top - Math.max(sticky + 8, scroller.clientHeight / 3));
    const code = target.closest(".section-text");
    if (code && code.scrollWidth > code.clientWidth) {
      const gutter = code.querySelector(".ln")?.getBoundingClientRect().width || 0;
      const box = code.getBoundingClientRect();
      const mark = target.getBoundingClientRect();
      // the highlight a quarter of the way in, so some of the line before it shows too
      if (mark.left < box.left + gutter || mark.right > box.right) code.scrollLeft += mark.left - box.left - gutter - (box.width - gutter) / 4;
    }
  } else {
    scroller.scrollTop = 0;
  }
  const box = viewer.getBoundingClientRect();
  if (!isSheet() && (box.bottom < 0 || box.top > window.innerHeight - 40)) viewer.scrollIntoView({ block: "start" });
}

/** `c`: a citation, or a claim's passage shaped like one. */
export async function openCitation(c, chip) {
  showViewer(c.heading || "Cited source", chip);
  chip?.classList.add("active");
  const where = $("viewer-where");
  const doc = documentById(c.document_id);
  const filename = c.filename || doc?.filename || c.path || "";
  const cells = formatWhere(c, doc); // a spreadsheet's rows by cell references: the sheet is in them
  const member = c.path && c.path !== filename && !cells ? c.path : ""; // a file inside a zip: named with its archive
  if (!c.document_id) {
    where.replaceChildren(el("span", { class: "error" }, "This citation points to a place that is not in the documents."));
    focusViewer();
    return;
  }
  try {
    const sections = await findSections(c, filename);
    where.replaceChildren(userText("bdi", filename, { class: "filename" }),
      ...(member ? [" › ", userText("bdi", member, { class: "filename member" })] : []),
      ` — ${cells || citationWhere(c) || "whole document"}`);
    if (c.note) where.append(el("br"), el("span", { class: c.role === "nearest" ? "warning nearest" : "warning" }, c.note));
    if (!c.verified) where.append(el("br"), el("span", { class: "warning" }, "Unverified: docqa did not find this quote at the cited place."));
    if (!sections.length) {
      $("viewer-body").replaceChildren(el("p", { class: "error" }, "The cited page or lines are not in this document."));
      focusViewer();
      return;
    }
    $("viewer-body").replaceChildren(...sections.map((s) => sectionBlock(s, filename, c, doc)));
    if (c.quote && !$("viewer-body").querySelector("mark.quote")) {
      $("viewer-body").prepend(el("p", { class: "warning" }, "The quoted words do not occur in this part of the document."));
    }
    focusViewer($("viewer-body").querySelector("mark"));
  } catch (err) {
    where.replaceChildren(el("span", { class: "error" }, `The source could not be loaded: ${err.message}`));
    focusViewer();
  }
}

/** A zip's members as a folder tree; choosing a file shows its lines below. */
function fileTree(doc, sections) {
  const byPath = new Map();
  for (const s of sections) {
    const path = s.path || doc.filename;
    if (!byPath.has(path)) byPath.set(path, []);
    byPath.get(path).push(s);
  }
  const root = { dirs: new Map(), files: [] };
  for (const path of [...byPath.keys()].sort()) {
    const parts = path.split("/");
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
      node = node.dirs.get(dir);
    }
    node.files.push([parts.at(-1), path]);
  }
  const shown = el("div", { class: "tree-file" });
  const render = (node) =>
    el("ul", { class: "tree" },
      ...[...node.dirs].map(([name, child]) =>
        el("li", {}, el("details", { open: true }, el("summary", {}, userText("bdi", `${name}/`, { class: "dir" })), render(child)))),
      ...node.files.map(([name, path]) => {
        const b = el("button", { type: "button", class: "linkish file", "data-path": path }, userText("bdi", name));
        b.addEventListener("click", () => {
          for (const x of $("viewer-body").querySelectorAll(".tree .file[aria-current]")) x.removeAttribute("aria-current");
          b.setAttribute("aria-current", "true");
          shown.replaceChildren(...joinSections(byPath.get(path)).map((s) => sectionBlock(s, doc.filename, null, doc)));
        });
        return el("li", {}, b);
      }));
  const files = byPath.size;
  // the archive is the tree's top folder (its own top folder, if it had one, was taken off the paths at upload)
  const top = el("ul", { class: "tree top" }, el("li", {}, el("details", { open: true },
    el("summary", {}, userText("bdi", doc.filename, { class: "dir archive" })), render(root))));
  return { nodes: [el("nav", { "aria-label": `Files in ${doc.filename}` }, top), shown], files };
}

/** Headings of Word/HTML sections (their heading path) or of Markdown text (# lines), as a table of contents. */
function headingNav(container) {
  const targets = [];
  let last = null;
  for (const art of container.querySelectorAll("article.section")) {
    const where = art.querySelector(".section-where").textContent;
    const heading = where.includes(" · ¶") ? where.split(" · ¶")[0] : null;
    if (heading && heading !== last) targets.push([heading, art]);
    last = heading ?? last;
    for (const line of art.querySelectorAll(".line")) {
      const m = /^(#{1,6})\s+(.+)/.exec(line.textContent);
      if (m) {
        line.classList.add(`md-h${m[1].length}`);
        targets.push([m[2], line]);
      }
    }
  }
  if (targets.length < 2) return null;
  return el("nav", { class: "toc", "aria-label": "Headings" }, el("ul", {},
    ...targets.map(([text, target]) => {
      const b = el("button", { type: "button", class: "linkish" }, userText("span", text));
      b.addEventListener("click", () => target.scrollIntoView({ block: "start" }));
      return el("li", {}, b);
    })));
}

export async function openDocument(doc, opener) {
  showViewer("Document", opener);
  const where = $("viewer-where");
  where.replaceChildren(userText("bdi", doc.filename, { class: "filename" }), ` — ${documentUnits(doc)}`);
  if (isArchive(doc)) {
    try {
      const { nodes, files } = fileTree(doc, await allSections(doc.id));
      where.append(` · ${files === 1 ? "1 file" : `${files} files`}`);
      $("viewer-body").replaceChildren(...nodes);
    } catch (err) {
      $("viewer-body").append(el("p", { class: "error" }, `The files could not be loaded: ${err.message}`));
    }
    focusViewer();
    return;
  }
  if (hasFormatView(doc)) { // e-mail, spreadsheets, legal XML: formats.js
    try {
      $("viewer-body").replaceChildren(...formatView(doc, await allSections(doc.id)));
    } catch (err) {
      $("viewer-body").append(el("p", { class: "error" }, `The document could not be loaded: ${err.message}`));
    }
    focusViewer();
    return;
  }
  let offset = 0;
  const loaded = [];
  const sections = el("div", { class: "sections" });
  $("viewer-body").replaceChildren(sections);
  const more = async () => {
    try {
      const page = await api(`/api/documents/${encodeURIComponent(doc.id)}/sections?offset=${offset}&limit=${VIEW_PAGE}`);
      loaded.push(...page.items);
      sections.replaceChildren(...joinSections(loaded).map((s) => sectionBlock(s, doc.filename, null, doc)));
      offset += page.items.length;
      $("viewer-more").hidden = offset >= page.total;
      $("viewer-body").querySelector("nav.toc")?.remove();
      const nav = headingNav(sections);
      if (nav) sections.before(nav);
    } catch (err) {
      $("viewer-body").append(el("p", { class: "error" }, `The sections could not be loaded: ${err.message}`));
    }
  };
  view.more = more;
  await more();
  focusViewer();
}

/** A section of docqa's README (served at /readme), rendered like an answer. */
export async function openReadme(heading, opener) {
  showViewer("docqa README", opener);
  try {
    const res = await fetch("/readme");
    const text = await res.text();
    const start = text.search(new RegExp(`^#+ ${heading.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\s*$`, "m"));
    const rest = start >= 0 ? text.slice(start) : text;
    const level = /^#+/.exec(rest)?.[0].length ?? 2;
    const body = rest.indexOf("\n") + 1; // the next heading of the same level or above ends the section
    const end = body > 0 ? rest.slice(body).search(new RegExp(`^#{1,${level}} `, "m")) : -1;
    const part = end >= 0 ? rest.slice(0, body + end) : rest;
    $("viewer-where").replaceChildren(`README — ${heading}`);
    $("viewer-body").replaceChildren(el("div", { class: "markdown readme" }, renderMarkdown(part)));
  } catch (err) {
    $("viewer-where").replaceChildren(el("span", { class: "error" }, `The README could not be loaded: ${err.message}`));
  }
  focusViewer();
}

export function setUpViewer() {
  $("viewer-close").addEventListener("click", () => closeViewer());
  $("viewer-back").addEventListener("click", () => closeViewer());
  $("viewer-more").addEventListener("click", () => view.more?.());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("viewer").hidden && $("viewer").contains(document.activeElement)) $("viewer-close").click();
  });
}
