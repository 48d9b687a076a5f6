// The conversation: questions and answers, each answer with its grounding sentence by sentence, its
// sources, an honest status while it is made (queue, reading, writing, stalled, done) and "Continue"
// for an answer cut at its length limit.
import { api, ApiError, postEvents } from "./api.js";
import { $, duration, el, num, plural, seconds, setStatus, userText } from "./dom.js";
import { selectedIds } from "./documents.js";
import { renderMarkdown } from "./markdown.js";
import { choice, choiceKey, readAheadAnswered, readAheadAsking, showPlan } from "./plan.js";
import { citationWhere, closeViewer, openCitation, setStepper } from "./viewer.js";

const STALL_MIN_S = 10; // never called stalled sooner than this
const STALL_GAPS = 3; // …nor before this many of the expected gaps between events have passed in silence
const PROGRESS_STEP = 512; // tokens read between progress events (the server's n_batch) until measured
const HEALTH_EVERY_MS = 2500; // while waiting in the queue, its position is refreshed this often

/** Seconds of silence after which the model counts as stalled, judged against what was measured: while
 * reading, progress comes once per `step` tokens, so at `rate` tokens/s a gap of step/rate seconds is
 * normal (512 tokens at 40 tokens/s: about 13 s); while writing, a token every 1/rate s; a chunk of a
 * chunked reading takes as long as the chunks before it took. `gap`: the longest gap seen so far. */
export function stallAfter({ stage, rate = 0, step = PROGRESS_STEP, gap = 0, chunkS = 0 }) {
  let expected = 0;
  if (stage === "reading") expected = chunkS || (rate > 0 ? step / rate : 0);
  else if (stage === "writing" && rate > 0) expected = 1 / rate;
  return Math.max(STALL_MIN_S, STALL_GAPS * expected, 2 * gap);
}

export const conv = {
  session: null, // the open session (with messages)
  sessionKey: null, // the choice (documents, model, mode) the open session was made for
  asking: null, // AbortController of the question in flight
  onSession: () => {}, // a session was created or answered: (session) — the list and the URL follow
};

// ---- grounding ----------------------------------------------------------------------------------

const STATUS = {
  quoted: { mark: "✓", word: "Quoted", long: "quoted verbatim from the cited place" },
  supported: { mark: "✓", word: "Supported", long: "supported by a passage docqa found" },
  unsupported: { mark: "⚠", word: "Unsupported", long: "no passage in the documents supports it" },
  restates_question: { mark: "↺", word: "Restates the question", long: "repeats the question; nothing to check" },
  not_in_documents: { mark: "∅", word: "Not in the documents", long: "says the documents do not say" },
};
const statusOf = (s) => STATUS[s] || { mark: "?", word: s, long: s };

// A sentence's marker or chip → the passage it opens, so the viewer can step to the next sentence's.
const passageOf = new WeakMap();

/** The sentences before and after the one `opener` opened, in the same answer, that have a passage. */
function sentenceSteps(opener) {
  const mine = opener && passageOf.get(opener);
  if (!mine?.sentence) return null;
  const msg = opener.closest(".msg");
  const seen = new Map(); // sentence number → its first marker (in the answer, else its chip)
  for (const node of msg?.querySelectorAll(".claim-mark, .claims .chip") || []) {
    const c = passageOf.get(node);
    if (c?.sentence && !seen.has(c.sentence)) seen.set(c.sentence, node);
  }
  const order = [...seen.keys()].sort((a, b) => a - b);
  const at = order.indexOf(mine.sentence);
  const step = (n) => {
    if (n === undefined) return null;
    const node = seen.get(n);
    const c = passageOf.get(node);
    const what = c.role === "nearest" ? "its nearest passage (not support)" : "its passage";
    return { label: n < mine.sentence ? `‹ Sentence ${n}` : `Sentence ${n} ›`, long: `Sentence ${n}: open ${what}`,
             open: () => openCitation(c, node) };
  };
  return { prev: step(order[at - 1]), next: step(order[at + 1]) };
}

/** A claim's passage as the viewer opens it (the passage text is what gets highlighted); `role` says
 * whether it supports sentence `sentence` or is only the nearest passage to it. */
function passageCitation(claim, i) {
  const p = claim.passage || claim.nearest;
  if (!p) return null;
  const note = claim.passage ? "" : "Nearest passage, for comparison: it does not support the sentence.";
  return { ...p, quote: p.quote || p.text, verified: true, note, role: claim.passage ? "support" : "nearest",
           sentence: i === undefined ? undefined : i + 1 };
}

function sourceChip(c, { label, extraClass = "" } = {}) {
  const name = c.path || c.filename || "unknown source";
  const where = citationWhere(c, { short: Boolean(c.role) }); // a passage shows its range: L12–L14
  const title = [
    c.quote ? `“${c.quote}”` : "",
    c.verified ? "" : "This quote could not be found at the cited place.",
    c.origin === "matched" ? "Matched by docqa to the answer's wording." : "",
  ].filter(Boolean).join(" ");
  const chip = el(
    "button",
    { type: "button", class: `chip${c.verified ? "" : " unverified"}${extraClass}`, title: title || undefined,
      "aria-label": label ? `${label}: ${name}${where ? `, ${where}` : ""}` : undefined },
    userText("bdi", name, { class: "filename" }),
    where ? el("span", { class: "where" }, where) : "",
    c.verified ? "" : el("span", { class: "badge" }, "unverified"),
  );
  chip.addEventListener("click", () => openCitation(c, chip));
  if (c.sentence) passageOf.set(chip, c);
  return chip;
}

export { sourceChip };

function claimRow(claim, i) {
  const st = statusOf(claim.status);
  const cite = passageCitation(claim, i);
  const row = el("li", { class: `claim ${claim.status}`, id: undefined },
    el("span", { class: "claim-status" }, el("span", { "aria-hidden": "true" }, `${st.mark} `), st.word),
    userText("span", claim.text, { class: "claim-text" }));
  if (cite) {
    row.append(sourceChip(cite, {
      label: claim.passage ? `Passage for sentence ${i + 1}` : `Nearest passage for sentence ${i + 1} (not support)`,
      extraClass: claim.passage ? " passage" : " nearest",
    }));
  }
  if (claim.status === "unsupported" && claim.missing?.length) {
    row.append(el("span", { class: "missing" }, `not in any close passage: ${claim.missing.join(", ")}`));
  }
  return row;
}

function groundingSummary(g, claims) {
  const checked = g.checked ?? claims.filter((c) => ["quoted", "supported", "unsupported"].includes(c.status)).length;
  const grounded = g.grounded ?? claims.filter((c) => c.status === "quoted" || c.status === "supported").length;
  const unsupported = g.unsupported ?? claims.filter((c) => c.status === "unsupported").length;
  const parts = [`${num(grounded)} of ${plural(checked, "sentence")} grounded in the documents`];
  if (unsupported) parts.push(`${num(unsupported)} unsupported`);
  return parts.join(" · ");
}

/** An answer withheld as unsupported: the model's draft, collapsed, and one line about its sentences (no
 * list of rows: none of them answers the question). */
function withheldView(msg) {
  const claims = msg.claims || [];
  const supported = claims.filter((c) => c.status === "quoted" || c.status === "supported").length;
  const checked = claims.filter((c) => ["quoted", "supported", "unsupported"].includes(c.status)).length;
  const words = checked
    ? `${num(supported)} of its ${plural(checked, "checked sentence")} matched a passage, but none answers the question from the documents.`
    : "No sentence of it could be checked against the documents.";
  const text = el("div", { class: "draft-text markdown", dir: "auto" }, renderMarkdown(msg.draft));
  markClaims(text, claims); // each sentence of the draft still opens its passage
  const unsupported = claims.some((c) => c.status === "unsupported");
  return el("details", { class: `grounding withheld${unsupported ? " has-unsupported" : ""}` },
    el("summary", {}, el("span", { class: "grounding-title" }, "Withheld draft: "), "what the model wrote, not supported as an answer"),
    text,
    el("p", { class: "muted" }, words));
}

/** Notes for the reader: never an operator's setting (the server's notes may name one). */
function readerNotes(msg) {
  return (msg.notes || [])
    .filter((n) => !(msg.draft && n.includes(msg.draft.slice(0, 40)))) // the withheld draft is shown in full above
    .filter((n) => !(isWithheld(msg) && /statement\(s\) in this answer could not be found/.test(n))) // said in the box
    .map((n) => n.replace(/\s*\([^()]*\bDOCQA_[A-Z_]+[^()]*\)/g, "").replace(/\s*\bDOCQA_[A-Z_]+(=\S+)?/g, ""));
}

const isWithheld = (msg) => typeof msg.draft === "string" && msg.draft.length > 0;

/** The claims in order, each with its status in words and a symbol, and its passage one click away. */
function groundingView(msg) {
  const claims = msg.claims || [];
  if (isWithheld(msg)) return withheldView(msg);
  if (!claims.length) return null;
  const unsupported = claims.some((c) => c.status === "unsupported");
  return el("details", { class: `grounding${unsupported ? " has-unsupported" : ""}`, open: true },
    el("summary", {}, el("span", { class: "grounding-title" }, "Grounding: "), groundingSummary(msg.grounding || {}, claims)),
    el("ol", { class: "claims", "aria-label": "Sentences of the answer and their support" }, claims.map(claimRow)));
}

/** Mark each claim inside the rendered answer with its status, where its sentence is found in one piece. */
function markClaims(container, claims) {
  const texts = [];
  const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) texts.push(walker.currentNode);
  let from = 0;
  claims.forEach((claim, i) => {
    const wanted = [claim.text, claim.text.replace(/[*_`]/g, "")].map((t) => t.trim()).filter((t) => t.length > 1);
    for (let n = from; n < texts.length; n++) {
      const node = texts[n];
      const hit = wanted.map((w) => [w, node.data.indexOf(w)]).find(([, at]) => at >= 0);
      if (!hit) continue;
      const [w, at] = hit;
      const tail = node.splitText(at + w.length);
      const st = statusOf(claim.status);
      const cite = passageCitation(claim, i);
      const marker = el("button", {
        type: "button", class: `claim-mark ${claim.status}`,
        "aria-label": `Sentence ${i + 1}: ${st.word.toLowerCase()}${cite ? `, open its ${cite.role === "nearest" ? "nearest passage (not support)" : "passage"}` : ""}`,
        title: `${st.word}: ${st.long}`,
      }, `${st.mark}${i + 1}`);
      if (cite) {
        marker.addEventListener("click", () => openCitation(cite, marker));
        passageOf.set(marker, cite);
      }
      else marker.disabled = true;
      if (claim.status === "unsupported") {
        const span = el("span", { class: "claim-inline unsupported" });
        const sentence = node.splitText(at);
        sentence.replaceWith(span);
        span.append(sentence);
        span.after(marker);
      } else {
        tail.before(marker);
      }
      texts.splice(n + 1, 0, tail);
      from = n + 1;
      break;
    }
  });
}

// ---- one assistant message -----------------------------------------------------------------------

function timingsLine(msg, clientTimes) {
  const t = msg.timings || {};
  const parts = [];
  if (msg.mode) parts.push(msg.mode === "whole" ? "whole document" : msg.mode);
  const ttft = clientTimes?.ttft ?? (typeof t.prefill_s === "number" ? (t.queue_s || 0) + t.prefill_s : null);
  const total = clientTimes?.total ?? (typeof t.prefill_s === "number" ? (t.queue_s || 0) + t.prefill_s + (t.generate_s || 0) : null);
  if (ttft !== null && ttft !== undefined) parts.push(`first word after ${seconds(ttft)}`);
  if (total !== null && total !== undefined) parts.push(`total ${seconds(total)}`);
  if (typeof t.prefill_tokens === "number") {
    const cached = t.cached_tokens ? `, ${num(t.cached_tokens)} reused` : "";
    parts.push(`read ${num(t.prefill_tokens)} tokens (documents and question) in ${duration(t.prefill_s) || "0 s"}${cached}`);
  }
  if (t.prefix_source && t.prefix_source !== "evaluated") parts.push(`document from ${t.prefix_source} cache`);
  if (typeof t.tokens_per_s === "number" && t.tokens_per_s) parts.push(`wrote ${num(t.generated_tokens ?? 0)} tokens at ${t.tokens_per_s} tokens/s`);
  const cov = msg.coverage;
  if (cov && typeof cov === "object" && cov.chunks_total) {
    const contributing = Array.isArray(cov.contributing) && cov.contributing.length ? `; evidence from chunk ${cov.contributing.join(", ")}` : "";
    parts.push(`${num(cov.chunks_read ?? cov.chunks_total)} of ${num(cov.chunks_total)} chunks read${contributing}`);
  }
  return parts.join(" · ");
}

function assistantView(onContinue) {
  const phase = el("span", { class: "phase" }, "");
  const readingLabel = el("span", { class: "reading-label" }, "Sending the question…");
  const bar = el("progress", { max: 1, "aria-label": "Reading progress", hidden: true });
  const elapsed = el("span", { class: "elapsed" }, "");
  const reading = el("div", { class: "reading status-line", role: "status", hidden: true }, phase, readingLabel, bar, elapsed);
  const thinking = userText("div", "", { class: "thinking-text" });
  const reasoning = el("details", { class: "reasoning", hidden: true }, el("summary", {}, "Reasoning"), thinking);
  const answer = userText("div", "", { class: "answer" });
  const grounding = el("div", { class: "grounding-box" });
  const cites = el("div", { class: "citations", hidden: true });
  const notes = el("ul", { class: "notes", hidden: true });
  const actions = el("div", { class: "msg-actions", hidden: true });
  const meta = el("p", { class: "meta" });
  const li = el("li", { class: "msg assistant", tabindex: "-1" }, el("div", { class: "who" }, "docqa"), reading, reasoning, answer, grounding, cites, notes, actions, meta);

  const t = { sent: 0, last: 0, first: null, tokens: 0, stage: "sending", ahead: null, timer: null, health: null,
    rate: 0, step: PROGRESS_STEP, done: null, gap: 0, chunkS: 0, mapFrom: null };
  const setPhase = (stage, word) => {
    t.stage = stage;
    li.dataset.stage = stage;
    phase.textContent = word;
  };
  const tick = () => {
    const now = performance.now();
    const quiet = (now - t.last) / 1000;
    elapsed.textContent = `${Math.floor((now - t.sent) / 1000)} s`;
    const limit = stallAfter({ stage: t.stage, rate: t.rate, step: t.step, gap: t.gap, chunkS: t.chunkS });
    const stalled = quiet > limit && t.stage !== "queue";
    reading.classList.toggle("stalled", stalled);
    li.dataset.stallAfter = String(Math.round(limit));
    if (stalled) {
      phase.textContent = "Stalled";
      const normal = t.stage === "reading" && t.rate > 0 && !t.chunkS
        ? ` At the measured ${num(Math.round(t.rate))} tokens/s, news comes every ${Math.round(t.step / t.rate)} s.` : "";
      readingLabel.textContent = `Nothing from the model for ${Math.floor(quiet)} s (it was ${t.stage}).${normal} It may be overloaded or stuck; Cancel stops the question.`;
    }
  };
  const heard = () => {
    const now = performance.now();
    if (t.stage === "reading" || t.stage === "writing") t.gap = Math.max(t.gap, (now - t.last) / 1000);
    t.last = now;
    reading.classList.remove("stalled");
  };
  const stopTimers = () => {
    clearInterval(t.timer);
    clearInterval(t.health);
  };

  const finish = (msg, live = false) => {
    stopTimers();
    li.removeAttribute("aria-busy");
    answer.classList.remove("streaming");
    reading.hidden = true;
    const content = msg.content ?? msg.answer ?? "";
    answer.replaceChildren(renderMarkdown(content));
    answer.classList.add("markdown");
    markClaims(answer, msg.claims || []);
    if (msg.thinking) {
      thinking.textContent = msg.thinking;
      reasoning.hidden = false;
    }
    grounding.replaceChildren(groundingView(msg) ?? "");
    const list = msg.citations || [];
    cites.replaceChildren(...(list.length ? [el("span", { class: "cites-label" }, "Sources")] : []), ...list.map((c) => sourceChip(c)));
    cites.hidden = list.length === 0;
    const noteList = readerNotes(msg);
    const cut = (msg.stop_reason === "length" || msg.extra?.stop_reason === "length") && !isWithheld(msg);
    if (cut) noteList.push("The answer was cut off at its length limit.");
    notes.replaceChildren(...noteList.map((n) => userText("li", n)));
    notes.hidden = noteList.length === 0;
    actions.replaceChildren();
    if (cut && onContinue) { // not for a withheld answer: continuing words the documents do not support
      const more = el("button", { type: "button", class: "small continue" }, "Continue the answer");
      more.addEventListener("click", () => onContinue(more));
      actions.append(more);
    }
    actions.hidden = actions.childElementCount === 0;
    const times = live && t.first !== null ? { ttft: (t.first - t.sent) / 1000, total: (performance.now() - t.sent) / 1000 } : null;
    meta.textContent = timingsLine(msg, times);
  };

  return {
    li,
    start() {
      li.setAttribute("aria-busy", "true");
      answer.classList.add("streaming");
      reading.hidden = false;
      t.sent = t.last = performance.now();
      setPhase("sending", "Sent");
      t.timer = setInterval(tick, 1000);
    },
    queue(q, modelName) {
      heard();
      t.ahead = q.ahead;
      const show = () => {
        if (t.stage !== "queue") return;
        readingLabel.textContent = t.ahead > 0
          ? `${plural(t.ahead, "question")} ahead of this one${q.avg_job_s ? ` (about ${duration(t.ahead * q.avg_job_s)} at recent speed)` : ""}`
          : "Next in line: the model is starting or about to read";
      };
      setPhase("queue", t.ahead > 0 ? "Waiting in the queue" : "Starting");
      show();
      if (t.ahead > 0) {
        t.health = setInterval(async () => {
          try {
            const h = await api("/api/health");
            const m = h?.details?.models?.[modelName];
            if (m && typeof m.queue_depth === "number") t.ahead = Math.min(t.ahead, Math.max(m.queue_depth - 1, 0));
            show();
          } catch {
            /* the position stays as it was */
          }
        }, HEALTH_EVERY_MS);
      }
    },
    progress(p) {
      if (t.stage !== "reading") t.gap = 0; // gaps are judged within one stage
      heard();
      clearInterval(t.health);
      reading.hidden = false;
      bar.hidden = false;
      if (p.phase === "map") {
        const now = performance.now();
        if (t.mapFrom === null) t.mapFrom = now;
        else if (p.chunk > 1) t.chunkS = (now - t.mapFrom) / 1000 / (p.chunk - 1); // mean time per chunk so far
        setPhase("reading", "Reading");
        bar.max = p.chunks || 1;
        bar.value = p.chunk || 0;
        readingLabel.textContent = `Reading chunk ${num(p.chunk)} of ${num(p.chunks)}…`;
        return;
      }
      bar.max = p.tokens_total || 1;
      bar.value = p.tokens_done || 0;
      if (p.tokens_per_s > 0) t.rate = p.tokens_per_s;
      if (t.done !== null && p.tokens_done > t.done) t.step = p.tokens_done - t.done;
      t.done = p.tokens_done;
      const rate = p.tokens_per_s ? ` · ${num(p.tokens_per_s)} tokens/s` : "";
      const eta = p.tokens_done < p.tokens_total && p.eta_s != null ? ` · about ${duration(p.eta_s)} left` : "";
      if (p.tokens_done >= p.tokens_total) {
        setPhase("reading", "Read");
        readingLabel.textContent = `Read ${num(p.tokens_total)} tokens of the documents${rate}. Writing the answer…`;
      } else {
        setPhase("reading", "Reading");
        readingLabel.textContent = `Reading the documents: ${num(p.tokens_done)} of ${num(p.tokens_total)} tokens${rate}${eta}`;
      }
    },
    thinking(text) {
      heard();
      reasoning.hidden = false;
      thinking.append(text);
    },
    token(text) {
      if (t.stage !== "writing") t.gap = 0;
      heard();
      clearInterval(t.health);
      const now = performance.now();
      if (t.first === null) t.first = now;
      t.tokens++;
      bar.hidden = true;
      setPhase("writing", "Writing");
      const s = (now - t.first) / 1000;
      t.rate = s > 0.5 ? t.tokens / s : 0;
      const rate = s > 0.5 ? ` · ${(t.tokens / s).toFixed(1)} tokens/s` : "";
      readingLabel.textContent = `${plural(t.tokens, "token")}${rate} · first word after ${seconds((t.first - t.sent) / 1000)}`;
      answer.append(text);
    },
    done: (msg) => finish(msg, true),
    show: (msg) => finish(msg, false),
    error(detail) {
      stopTimers();
      li.removeAttribute("aria-busy");
      answer.classList.remove("streaming");
      reading.hidden = true;
      li.classList.add("failed");
      answer.after(el("p", { class: "error", role: "alert" }, userText("span", detail)));
    },
  };
}

function userItem(msg) {
  if (msg.continues) {
    return el("li", { class: "msg user continues" }, el("div", { class: "who" }, "You"),
      el("div", { class: "question-text continue-text", dir: "auto" }, "Continue the answer."));
  }
  return el("li", { class: "msg user" }, el("div", { class: "who" }, "You"), userText("div", msg.content, { class: "question-text" }));
}

export function renderHistory(messages) {
  const items = [];
  const lastAssistant = messages.map((m) => m.role).lastIndexOf("assistant");
  messages.forEach((m, i) => {
    if (m.role === "user") items.push(userItem(m));
    else {
      const view = assistantView(i === lastAssistant ? (button) => ask(null, { continueAnswer: true, button }) : null);
      view.show(m);
      items.push(view.li);
    }
  });
  $("history").replaceChildren(...items);
}

export function updateSessionLabel(names = []) {
  const label = $("session-label");
  label.replaceChildren();
  if (!conv.session) {
    label.append("A new session starts with your first question.");
    if (!selectedIds().length) { // on a phone the documents come after the question box
      const go = el("button", { type: "button", class: "linkish", id: "choose-documents" }, "Choose its documents");
      go.addEventListener("click", () => {
        $("docs-h").scrollIntoView({ block: "start" });
        ($("documents").querySelector("input[type=checkbox]") || $("file")).focus({ preventScroll: true });
      });
      label.append(" ", go, ".");
    }
  } else if (selectedIds().length && choiceKey() !== conv.sessionKey) {
    label.append("You changed the documents or model: your next question starts a new session.");
  } else {
    label.append("Session: ", userText("bdi", conv.session.title, { class: "title" }), ` · ${conv.session.mode}`);
    if (names.length) label.append(" · ", userText("bdi", names.join(", "), { class: "docs" }));
  }
}

/** The open session, or a new one for the chosen documents (then `created` is true). */
async function ensureSession() {
  const ids = selectedIds();
  if (conv.session && (!ids.length || choiceKey() === conv.sessionKey)) return { session: conv.session, created: false };
  if (!ids.length) throw new ApiError(0, "Choose at least one document first.");
  const session = await api("/api/sessions", { method: "POST", body: choice() });
  conv.session = session;
  conv.sessionKey = choiceKey();
  $("history").replaceChildren();
  closeViewer({ returnFocus: false }); // a source of the previous session does not stay open beside this one
  showPlan(session.plan);
  conv.onSession(session);
  return { session, created: true };
}

/** A session made for a question that was then stopped or failed holds nothing: it is deleted, so the
 * list shows no empty session. */
async function dropIfEmpty(session) {
  try {
    const stored = await api(`/api/sessions/${encodeURIComponent(session.id)}`);
    if ((stored.messages || []).length) return false;
    await api(`/api/sessions/${encodeURIComponent(session.id)}`, { method: "DELETE" });
  } catch {
    return false; // it stays listed; nothing else depends on it
  }
  if (conv.session?.id === session.id) {
    conv.session = null;
    conv.sessionKey = null;
  }
  return true;
}

/** Ask `question` (or continue the last answer) in the open session, streaming the answer in. */
export async function ask(question, { continueAnswer = false, button = null } = {}) {
  if (conv.asking) return;
  const status = $("ask-status");
  const controller = new AbortController();
  conv.asking = controller;
  $("ask-button").disabled = true;
  if (button) button.disabled = true;
  setStatus(status, "Opening the session…");
  let session;
  let created = false;
  try {
    ({ session, created } = await ensureSession());
  } catch (err) {
    setStatus(status, err.message, "error");
    conv.asking = null;
    $("ask-button").disabled = false;
    if (button) button.disabled = false;
    return;
  }
  for (const b of $("history").querySelectorAll(".msg-actions")) b.hidden = true; // one Continue at a time
  const view = assistantView((b) => ask(null, { continueAnswer: true, button: b }));
  $("history").append(userItem(continueAnswer ? { continues: true } : { content: question }), view.li);
  view.start();
  view.li.scrollIntoView({ block: "nearest" });
  if (!continueAnswer) $("question").value = "";
  $("stop-button").hidden = false;
  setStatus(status, "Answering…");
  readAheadAsking(choiceKey());
  let finished = false;
  let answered = null;
  const body = continueAnswer ? { question: "", continue_answer: true } : { question };
  const length = $("answer-length").value;
  if (length) body.max_tokens = Number(length);
  try {
    const url = `/api/sessions/${encodeURIComponent(session.id)}/questions`;
    for await (const { event: kind, data } of postEvents(url, body, controller.signal)) {
      if (kind === "queue") view.queue(data, session.model);
      else if (kind === "progress") view.progress(data);
      else if (kind === "thinking") view.thinking(data.text ?? "");
      else if (kind === "token") view.token(data.text ?? "");
      else if (kind === "done") {
        view.done(data);
        finished = true;
        answered = data;
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
    conv.asking = null;
    $("ask-button").disabled = false;
    $("stop-button").hidden = true;
    readAheadAnswered(answered);
    if (!answered && !continueAnswer && !$("question").value.trim()) $("question").value = question; // to ask again
    if (!answered && created && (await dropIfEmpty(session))) {
      sessionGone();
    } else {
      conv.onSession(conv.session);
    }
    // focus goes to what arrived (not to the page's body, where a disabled button leaves it) unless the
    // person is already typing elsewhere
    const active = document.activeElement;
    if (!active || active === document.body || active === $("ask-button") || active === $("stop-button") || active === button) {
      (answered ? view.li : $("question")).focus({ preventScroll: Boolean(answered) });
    }
  }
}

/** The question's session was empty and is gone: the URL and the list forget it, the stopped exchange stays
 * on screen as it was. */
function sessionGone() {
  document.dispatchEvent(new CustomEvent("docqa:session-gone"));
}

export function setUpConversation({ onSession }) {
  conv.onSession = onSession;
  setStepper(sentenceSteps);
  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) {
      setStatus($("ask-status"), "Write a question first.", "error");
      $("question").focus();
      return;
    }
    ask(question);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
  });
  $("stop-button").addEventListener("click", () => conv.asking?.abort());
}
