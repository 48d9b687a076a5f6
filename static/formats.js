// The viewer's views of the formats reviewers receive (issue #27), kept apart from viewer.js:
// - e-mail (.eml, .mbox): each message's headers, its body with line numbers, its attachments listed (each
//   opens below, read by its own reader) and what was skipped with the reason;
// - spreadsheets (.xlsx, .ods): each sheet as a table with column letters and row numbers, every cell titled
//   with its address (Sheet1!B12);
// - legal XML (USLM, Akoma Ntoso): each section under its § number and heading path, its paragraphs
//   numbered, and a list of the § numbers to jump to.
// formatWhere() words a citation the same way (`Sheet1!A3:C3`), as docqa/ingest/where.py does.
import { el, num, plural, userText } from "./dom.js";

const SHEET_ROWS = 500; // rows shown per sheet; the rest are counted, not drawn
const has = (v) => v !== null && v !== undefined;

export const hasFormatView = (doc) => ["email", "sheet", "legal_xml"].includes(doc?.kind);

/** The view's nodes for a whole document (`sections`: all of them, in order). */
export function formatView(doc, sections) {
  if (doc.kind === "email") return mailView(doc, sections);
  if (doc.kind === "sheet") return sheetView(doc, sections);
  return legalView(doc, sections);
}

/** Where a citation of a spreadsheet points, by cell references ("Sheet1!A3:C3"); null for other kinds. */
export function formatWhere(c, doc) {
  if (doc?.kind !== "sheet" || !c.path || !has(c.line_start)) return null;
  const cells = sheetCells(doc.meta, c.path, c.line_start, c.line_end ?? c.line_start);
  return cells ? `${c.path}!${cells}` : null;
}

// -- columns ------------------------------------------------------------------------------------------

export function columnName(n) {
  let out = "";
  for (let k = n; k > 0; k = Math.floor((k - 1) / 26)) out = String.fromCharCode(65 + ((k - 1) % 26)) + out;
  return out || "A";
}

const columnNumber = (letters) => [...letters].reduce((n, ch) => n * 26 + ch.charCodeAt(0) - 64, 0);

function sheetRange(meta, sheet) {
  const entry = (meta?.sheets || []).find((s) => s.name === sheet);
  const m = /^([A-Z]+)(\d+):([A-Z]+)(\d+)$/.exec(entry?.range || "");
  return m ? { first: columnNumber(m[1]), last: columnNumber(m[3]), range: entry.range } : null;
}

function sheetCells(meta, sheet, from, to) {
  const r = sheetRange(meta, sheet);
  return r ? `${columnName(r.first)}${from}:${columnName(r.last)}${to}` : null;
}

// -- spreadsheets ---------------------------------------------------------------------------------------

function sheetView(doc, sections) {
  const bySheet = new Map();
  for (const s of sections) {
    if (!bySheet.has(s.path)) bySheet.set(s.path, []);
    bySheet.get(s.path).push(s);
  }
  return [...bySheet].map(([sheet, parts]) => {
    const rows = new Map(); // row number → cells (from column A)
    for (const s of parts) s.text.split("\n").forEach((line, i) => rows.set(s.line_start + i, line ? line.split(" | ") : []));
    const range = sheetRange(doc.meta, sheet);
    const width = Math.max(range?.last || 0, ...[...rows.values()].map((cells) => cells.length));
    const numbers = [...rows.keys()].sort((a, b) => a - b);
    const shown = numbers.slice(0, SHEET_ROWS);
    const head = el("tr", {}, el("th", { scope: "col", class: "corner" }, ""),
      ...Array.from({ length: width }, (_, k) => el("th", { scope: "col" }, columnName(k + 1))));
    const body = shown.map((n) => el("tr", { "data-row": n }, el("th", { scope: "row" }, String(n)),
      ...Array.from({ length: width }, (_, k) => {
        const value = rows.get(n)[k] ?? "";
        const address = `${columnName(k + 1)}${n}`;
        return userText("td", value, { "data-cell": address, title: `${sheet}!${address}` });
      })));
    const caption = el("caption", {}, userText("bdi", sheet, { class: "sheet-name" }),
      range ? ` — ${range.range}` : "", ` · ${plural(numbers.length, "row")}`);
    const table = el("table", { class: "sheet-grid", "data-sheet": sheet }, caption, el("thead", {}, head), el("tbody", {}, body));
    const more = numbers.length > shown.length
      ? el("p", { class: "muted" }, `${num(numbers.length - shown.length)} more rows are not drawn here; questions read them all.`)
      : null;
    return el("section", { class: "sheet" }, el("div", { class: "table-wrap", tabindex: "0" }, table), more);
  });
}

// -- e-mail ---------------------------------------------------------------------------------------------

const HEADERS = [["from", "From"], ["to", "To"], ["cc", "Cc"], ["date", "Date"], ["subject", "Subject"]];

function lines(text, first, prefix = "") {
  const box = userText("pre", "", { class: "section-text" });
  text.split("\n").forEach((line, i) => {
    const n = `${prefix}${first + i}`;
    box.append(el("span", { class: "line", "data-n": n }, el("span", { class: "ln", "data-n": n, "aria-hidden": "true" }), line || "\u200b"));
  });
  return box;
}

function partBlock(s) {
  const where = has(s.page) ? `Page ${s.page}` : has(s.para_start)
    ? `${s.heading || "Before the first heading"} · ¶${s.para_start}${s.para_end !== s.para_start ? `–${s.para_end}` : ""}`
    : `Lines ${s.line_start}–${s.line_end}`;
  const box = has(s.para_start) ? lines(s.text, s.para_start, "¶") : has(s.line_start) ? lines(s.text, s.line_start) : userText("pre", s.text, { class: "section-text" });
  return el("article", { class: "section" }, userText("h4", where, { class: "section-where" }), box);
}

function mailView(doc, sections) {
  const messages = doc.meta?.messages?.length ? doc.meta.messages : [{ n: 1, attachments: [] }];
  const skipped = doc.skipped || [];
  return messages.map((m) => {
    const path = m.path || null;
    const headers = el("dl", { class: "mail-headers" },
      ...HEADERS.filter(([key]) => m[key]).flatMap(([key, label]) => [el("dt", {}, label), userText("dd", m[key])]));
    const own = sections.filter((s) => (s.path || null) === path);
    const body = own.map((s) => lines(s.text, s.line_start ?? s.para_start ?? 1, has(s.para_start) ? "¶" : ""));
    const shown = el("div", { class: "mail-part" });
    const items = (m.attachments || []).map((label) => {
      const where = path ? `${path}/${label}` : label;
      const parts = sections.filter((s) => s.path === where || s.path?.startsWith(`${where}/`));
      const skip = skipped.find((x) => x.path === where);
      if (!parts.length) {
        return el("li", { class: "skipped" }, userText("bdi", label, { class: "filename" }),
          skip ? [" — skipped: ", userText("span", skip.reason)] : " — nothing read");
      }
      const pages = new Set(parts.filter((s) => has(s.page)).map((s) => s.page)).size;
      const b = el("button", { type: "button", class: "linkish file", "data-path": where }, userText("bdi", label));
      b.addEventListener("click", () => {
        for (const x of b.closest(".mail").querySelectorAll(".mail-attachments .file[aria-current]")) x.removeAttribute("aria-current");
        b.setAttribute("aria-current", "true");
        shown.replaceChildren(userText("h4", label, { class: "attachment-name" }), ...parts.map(partBlock));
      });
      return el("li", {}, b, ` — ${pages ? plural(pages, "page") : plural(parts.length, "section")}`);
    });
    const title = `${m.subject || "(no subject)"}${messages.length > 1 ? ` — message ${m.n}` : ""}`;
    return el("article", { class: "mail", "data-message": path || "" },
      userText("h3", title, { class: "mail-subject" }), headers,
      el("div", { class: "mail-body" }, ...body),
      items.length ? el("div", { class: "mail-attachments" }, el("h4", {}, `Attachments (${items.length})`), el("ul", {}, items)) : null,
      shown);
  });
}

// -- legal XML ------------------------------------------------------------------------------------------

function legalView(doc, sections) {
  const blocks = [];
  const toc = [];
  let last = null;
  for (const s of sections) {
    const clause = s.clause ? `§${s.clause}` : "";
    const heading = s.heading || (doc.meta?.title ?? "Preamble");
    const block = el("article", { class: "section legal", "data-clause": s.clause || "" },
      el("h3", { class: "section-where" }, clause ? el("span", { class: "clause" }, clause) : "", clause ? " " : "",
        userText("span", heading.split(" › ").at(-1), { class: "heading", title: heading })),
      has(s.para_start) ? lines(s.text, s.para_start, "¶") : lines(s.text, s.line_start ?? 1));
    blocks.push(block);
    if (clause && clause !== last) toc.push([clause, heading.split(" › ").at(-1), block]);
    last = clause || last;
  }
  const nav = toc.length > 1 ? el("nav", { class: "toc legal-toc", "aria-label": "Sections" }, el("ul", {},
    ...toc.map(([clause, heading, block]) => {
      const b = el("button", { type: "button", class: "linkish" }, el("span", { class: "clause" }, clause), " ", userText("span", heading));
      b.addEventListener("click", () => block.scrollIntoView({ block: "start" }));
      return el("li", {}, b);
    }))) : null;
  return [nav, ...blocks].filter(Boolean);
}
