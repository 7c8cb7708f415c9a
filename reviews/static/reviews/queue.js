// The reviewer's workspace, live: no build step, no framework.
//
// Follows the live queue websocket of each tenant on the page (the session cookie
// authenticates it: same origin). On the queue page every event re-renders the list in
// place from the server (same URL, same filters), keeping the rows you ticked; new rows
// flash. On a task page an event about this task says what changed. The task page's
// amendment list editor lives here too.

const RECONNECT_MS = [500, 1000, 2000, 5000, 10000];
const REFRESH_DEBOUNCE_MS = 150;
const CLOSE_REVOKED = 4403;

const indicator = document.getElementById("hitl-live");

function setLive(state, text) {
  if (!indicator) return;
  indicator.classList.toggle("hitl-on", state === "on");
  indicator.classList.toggle("hitl-off", state === "off");
  indicator.textContent = text;
}

// --- The websocket --------------------------------------------------------------------

function follow(slug, onEvent, onReconnect) {
  let attempt = 0;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/v1/tenants/${encodeURIComponent(slug)}/reviews/`);
    socket.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "hello") {
        if (attempt > 0) onReconnect();  // events may have passed while we were away
        attempt = 0;
        setLive("on", "live");
      } else if (frame.type === "resync") {
        onReconnect();
      } else if (frame.seq !== undefined) {
        onEvent(frame);
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === CLOSE_REVOKED) {
        setLive("off", "no longer a member: reload");
        return;
      }
      setLive("off", "reconnecting…");
      const delay = RECONNECT_MS[Math.min(attempt, RECONNECT_MS.length - 1)];
      attempt += 1;
      setTimeout(open, delay);
    });
  };
  open();
}

// --- The queue page -------------------------------------------------------------------

function taskIds(root) {
  return new Set([...root.querySelectorAll("a.hitl-task")].map((a) => a.dataset.taskId));
}

let refreshTimer = null;
let refreshing = false;
let refreshAgain = false;

async function refreshQueue() {
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  try {
    const form = document.getElementById("changelist-form");
    if (!form) return;
    const response = await fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("changelist-form");
    if (!fresh) return;
    const before = taskIds(form);
    const ticked = new Set([...form.querySelectorAll("input.action-select:checked")].map((box) => box.value));
    const action = form.querySelector("select[name=action]")?.value;
    form.innerHTML = fresh.innerHTML;
    // The search bar's "N results (M total)" sits outside the form.
    const toolbar = document.getElementById("toolbar");
    const freshToolbar = page.getElementById("toolbar");
    if (toolbar && freshToolbar && !toolbar.contains(document.activeElement)) {  // not while typing there
      const query = toolbar.querySelector("input[name=q]")?.value;
      toolbar.innerHTML = freshToolbar.innerHTML;
      const input = toolbar.querySelector("input[name=q]");
      if (input && query !== undefined) input.value = query;
    }
    form.querySelectorAll("input.action-select").forEach((box) => { box.checked = ticked.has(box.value); });
    const select = form.querySelector("select[name=action]");
    if (select && action) select.value = action;
    if (window.Actions) window.Actions(form.querySelectorAll("tr input.action-select"));
    for (const link of form.querySelectorAll("a.hitl-task")) {
      if (!before.has(link.dataset.taskId)) link.closest("tr")?.classList.add("hitl-new");
    }
    document.dispatchEvent(new CustomEvent("hitl:queue-refreshed"));
  } finally {
    refreshing = false;
    if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
  }
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshQueue, REFRESH_DEBOUNCE_MS);
}

// --- The task page --------------------------------------------------------------------

const DESCRIBE = {
  "review.claimed": (e) => `Claimed by ${e.claimed_by} just now.`,
  "review.released": () => "The claim was released just now.",
  "review.resolved": () => "This task was decided just now.",
  "review.cancelled": () => "This task was cancelled just now.",
};

function taskEvent(taskId, event) {
  if (event.task_id !== taskId || !DESCRIBE[event.type]) return;
  const holder = document.getElementById("hitl-holder");
  if (holder && (event.type === "review.claimed" || event.type === "review.released")) {
    holder.textContent = event.claimed_by ? `claimed by ${event.claimed_by}` : "not claimed";
  }
  const stale = document.getElementById("hitl-stale");
  if (stale) {
    stale.hidden = false;
    stale.textContent = `${DESCRIBE[event.type](event)} `;
    const reload = document.createElement("a");
    reload.href = location.pathname;
    reload.textContent = "Reload the task";
    stale.append(reload);
  }
}

function amendmentEditor() {
  const list = document.getElementById("hitl-amendment-list");
  const add = document.getElementById("hitl-add-amendment");
  const form = document.getElementById("hitl-decide-form");
  if (!form) return;
  const error = document.getElementById("hitl-form-error");
  if (list && add) {
    add.addEventListener("click", () => {
      const row = list.querySelector("li").cloneNode(true);
      row.querySelector("input").value = "";
      list.append(row);
      row.querySelector("input").focus();
    });
    list.addEventListener("input", () => { if (error) error.hidden = true; });
    list.addEventListener("click", (event) => {
      if (!event.target.classList.contains("hitl-remove")) return;
      const row = event.target.closest("li");
      if (list.children.length > 1) row.remove(); else row.querySelector("input").value = "";
    });
  }
  form.addEventListener("submit", (event) => {
    const decision = event.submitter?.value;
    const typed = [...form.querySelectorAll("input[name=amendments]")].filter((input) => input.value.trim());
    if (decision === "amend" && typed.length === 0) {
      event.preventDefault();
      error.hidden = false;
      error.textContent = "Amend needs at least one amendment: write what should change.";
      form.querySelector("input[name=amendments]")?.focus();
    }
  });
}

// --- Start ----------------------------------------------------------------------------

if (indicator) {
  const slugs = (indicator.dataset.tenants || "").split(" ").filter(Boolean);
  const page = indicator.dataset.page;
  const taskId = indicator.dataset.taskId;
  const onEvent = page === "queue" ? scheduleRefresh : (event) => taskEvent(taskId, event);
  const onReconnect = page === "queue" ? scheduleRefresh : () => {};
  if (slugs.length === 0) setLive("off", "no live queue");
  for (const slug of slugs) follow(slug, onEvent, onReconnect);
}
amendmentEditor();
