// Sessions: the list (titled by their first question), opening one, and the URL that names the open
// session (?session=ID), so a reload or a shared link opens it again.
import { api } from "./api.js";
import { $, el, narrow, plural, setStatus, userText, when } from "./dom.js";
import { choose, documentById, setModelKey } from "./documents.js";
import { conv, renderHistory, updateSessionLabel } from "./conversation.js";
import { choiceKey, modelKey, showPlan, skipPendingPlan, updatePlan } from "./plan.js";
import { closeViewer } from "./viewer.js";

const names = (ids) => (ids || []).map((id) => documentById(id)?.filename).filter(Boolean);

/** The URL names the open session (replaceState: the back button is not filled with sessions). */
function setUrl(id) {
  const url = new URL(window.location.href);
  if (id) url.searchParams.set("session", id);
  else url.searchParams.delete("session");
  window.history.replaceState(null, "", url);
}

export const sessionInUrl = () => new URL(window.location.href).searchParams.get("session");

export function sessionLabel() {
  updateSessionLabel(names(conv.session?.document_ids));
}

export async function loadSessions() {
  let sessions;
  try {
    sessions = await api("/api/sessions");
  } catch (err) {
    setStatus($("sessions-empty"), `The sessions could not be listed: ${err.message}`, "error");
    return;
  }
  $("sessions-empty").hidden = sessions.length > 0;
  const open = sessions.find((s) => s.id === conv.session?.id);
  if (open && open.title !== conv.session.title) {
    conv.session.title = open.title; // titled by its first question
    sessionLabel();
  }
  $("sessions").replaceChildren(
    ...sessions.map((s) => {
      const button = el(
        "button",
        { type: "button", class: "session", "data-id": s.id, "aria-current": s.id === conv.session?.id ? "true" : undefined },
        userText("span", s.title, { class: "title" }),
        userText("span", names(s.document_ids).join(", "), { class: "docs" }),
        el("span", { class: "meta" }, [when(s.updated_at), s.mode].filter(Boolean).join(" · ")),
      );
      button.addEventListener("click", () => openSession(s.id, { reveal: true }));
      return el("li", {}, button);
    }),
  );
}

/** A session was created or answered: the list, the label and the URL follow. */
export function sessionChanged(session) {
  if (session) setUrl(session.id);
  sessionLabel();
  loadSessions();
}

export async function openSession(id, { reveal = false } = {}) {
  let session;
  try {
    session = await api(`/api/sessions/${encodeURIComponent(id)}`);
  } catch (err) {
    setStatus($("ask-status"), `The session could not be opened: ${err.message}`, "error");
    if (err.status === 404) setUrl(null);
    return;
  }
  if (conv.session?.id !== session.id) closeViewer({ returnFocus: false }); // the last session's source goes with it
  conv.session = session;
  const missing = choose(session.document_ids);
  if ([...$("model").options].some((o) => o.value === session.model)) $("model").value = session.model;
  setModelKey(modelKey());
  conv.sessionKey = choiceKey();
  skipPendingPlan();
  if (session.plan) showPlan(session.plan);
  setStatus($("ask-status"), missing ? `${plural(missing, "document")} of this session no longer exist.` : "", missing ? "error" : "");
  renderHistory(session.messages || []);
  setUrl(session.id);
  sessionLabel();
  document.dispatchEvent(new CustomEvent("docqa:select-tab", { detail: "ask" }));
  await loadSessions();
  if (reveal && narrow()) $("panel-ask").scrollIntoView({ block: "start" }); // on a phone, the conversation comes into view
}

export function newSession() {
  conv.session = null;
  conv.sessionKey = null;
  closeViewer({ returnFocus: false });
  $("history").replaceChildren();
  setStatus($("ask-status"), "");
  setUrl(null);
  sessionLabel();
  loadSessions();
  updatePlan();
  $("question").focus();
}

export function setUpSessions() {
  $("new-session").addEventListener("click", newSession);
  document.addEventListener("docqa:session-gone", () => { // a new session whose only question was stopped
    setUrl(null);
    sessionLabel();
    loadSessions();
  });
}
