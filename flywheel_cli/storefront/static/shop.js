// Flywheel storefront: searches the API named in config.json and reports what the shopper
// saw and did to POST /events, attributed to the query_id of the list it happened on.
// Plain ES2020, no dependencies; every text from the API goes in via textContent.

const PAGE_SIZE = 10;
const SESSION_KEY = "flywheel.session_id";

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

const form = $("search-form");
const input = $("search-input");
const submit = $("search-submit");
const errorBox = $("error");
const emptyBox = $("empty");
const list = $("results");
const meta = $("meta");
const eventsStatus = $("events-status");
const cartCount = $("cart-count");

const state = {
  api: null,
  sessionId: null,
  searchSeq: 0, // a newer search makes the answer of an older one stale
  cart: 0,
  events: { inFlight: 0, accepted: 0, pending: 0, rejected: 0 },
};

// crypto.randomUUID exists only in secure contexts (https, localhost); a shop served over
// plain http elsewhere still needs unique event ids, and getRandomValues works everywhere.
function newId() {
  if (typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function sessionId() {
  let id = null;
  try {
    id = sessionStorage.getItem(SESSION_KEY);
    if (!id) {
      id = newId();
      sessionStorage.setItem(SESSION_KEY, id);
    }
  } catch {
    // Storage can be disabled; one id per page load is the best we can do then.
    id = id || newId();
  }
  return id;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function clearError() {
  errorBox.textContent = "";
  errorBox.hidden = true;
}

// The API answers every 4xx/5xx with {"error", "message"}; fall back to the status line.
async function apiError(response) {
  let message = "";
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") {
      message = body.message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return `${response.status} ${response.statusText || "error"}${message ? `: ${message}` : ""}`;
}

// fetch rejects (TypeError) without a response when the network fails or the browser blocks
// a cross-origin answer; the script cannot tell which, so the message names both.
function networkError(what, err) {
  return (
    `${what}: could not reach the search API at ${state.api} (${err.message}). ` +
    `Is it running, and does FLYWHEEL_SERVER__CORS_ORIGINS include ${location.origin}?`
  );
}

function showEventsStatus() {
  const e = state.events;
  for (const [key, value] of Object.entries(e)) {
    eventsStatus.dataset[key] = String(value);
  }
  eventsStatus.textContent =
    `events: ${e.accepted} accepted` +
    (e.pending ? `, ${e.pending} pending` : "") +
    (e.rejected ? `, ${e.rejected} rejected` : "");
}

async function sendEvents(events) {
  if (events.length === 0) {
    return;
  }
  state.events.inFlight += events.length;
  showEventsStatus();
  try {
    const response = await fetch(`${state.api}/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events }),
    });
    // 503 carries the same body as 200: which events were accepted, pending or refused.
    if (!response.ok && response.status !== 503) {
      state.events.rejected += events.length;
      showError(`Recording ${events[0].action_name} failed: ${await apiError(response)}`);
      return;
    }
    const body = await response.json();
    state.events.accepted += body.accepted;
    state.events.pending += body.pending;
    state.events.rejected += body.rejected.length;
    if (body.rejected.length > 0) {
      const first = body.rejected[0];
      showError(`${body.rejected.length} event(s) not recorded: ${first.code}: ${first.reason}`);
    }
  } catch (err) {
    state.events.rejected += events.length;
    showError(networkError(`Recording ${events[0].action_name} failed`, err));
  } finally {
    state.events.inFlight -= events.length;
    showEventsStatus();
  }
}

function interaction(served, action, result) {
  return {
    event_id: newId(),
    query_id: served.query_id,
    action_name: action,
    object_id: result.id,
    position: result.position,
    session_id: state.sessionId,
    timestamp: new Date().toISOString(),
  };
}

function formatPrice(price) {
  if (typeof price !== "number" || !Number.isFinite(price)) {
    return null;
  }
  return price.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function renderResult(served, result) {
  const payload = result.payload || {};
  const item = document.createElement("li");
  item.className = "result";
  item.dataset.testid = "result";
  item.dataset.productId = result.id;
  item.dataset.position = String(result.position);

  const position = document.createElement("span");
  position.className = "position";
  position.dataset.testid = "result-position";
  position.textContent = `#${result.position}`;

  const body = document.createElement("div");
  // A button, not a link: the click is recorded and the shopper stays on the list.
  const title = document.createElement("button");
  title.type = "button";
  title.className = "title";
  title.dataset.testid = "result-title";
  title.textContent = String(payload.title ?? payload.name ?? result.id);
  title.addEventListener("click", () => {
    item.classList.add("clicked");
    sendEvents([interaction(served, "click", result)]);
  });
  body.append(title);

  const details = [payload.brand, formatPrice(payload.price)].filter((d) => d != null && d !== "");
  if (details.length > 0) {
    const line = document.createElement("div");
    line.className = "details";
    line.dataset.testid = "result-details";
    line.textContent = details.join(" · ");
    body.append(line);
  }

  const add = document.createElement("button");
  add.type = "button";
  add.className = "add-to-cart";
  add.dataset.testid = "add-to-cart";
  add.textContent = "Add to cart";
  add.addEventListener("click", () => {
    state.cart += 1;
    cartCount.textContent = String(state.cart);
    add.classList.add("added");
    add.textContent = "Added";
    sendEvents([interaction(served, "add_to_cart", result)]);
  });

  item.append(position, body, add);
  return item;
}

function render(served) {
  list.replaceChildren(...served.results.map((result) => renderResult(served, result)));
  list.dataset.queryId = served.query_id;
  list.dataset.modelVersion = served.model_version;
  list.dataset.arm = served.arm;
  emptyBox.hidden = served.results.length > 0;
  meta.textContent =
    `model ${served.model_version} · arm ${served.arm} · ${served.took_ms.toFixed(1)} ms`;
  // Impressions for exactly what was rendered, so the click model sees what was skipped.
  sendEvents(served.results.map((result) => interaction(served, "impression", result)));
}

async function search(query) {
  const seq = ++state.searchSeq;
  clearError();
  list.setAttribute("aria-busy", "true");
  const params = new URLSearchParams({ q: query, k: String(PAGE_SIZE), session_id: state.sessionId });
  try {
    const response = await fetch(`${state.api}/search?${params}`, {
      headers: { accept: "application/json" },
    });
    if (seq !== state.searchSeq) {
      return;
    }
    if (!response.ok) {
      showError(`Search failed: ${await apiError(response)}`);
      return;
    }
    const served = await response.json();
    if (seq === state.searchSeq) {
      render(served);
    }
  } catch (err) {
    if (seq === state.searchSeq) {
      showError(networkError("Search failed", err));
    }
  } finally {
    if (seq === state.searchSeq) {
      list.removeAttribute("aria-busy");
    }
  }
}

async function start() {
  state.sessionId = sessionId();
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) {
      throw new Error(`${response.status} ${response.statusText}`);
    }
    const config = await response.json();
    if (typeof config.api !== "string" || config.api === "") {
      throw new Error('config.json has no "api" URL');
    }
    state.api = config.api.replace(/\/+$/, "");
  } catch (err) {
    showError(`This shop is not configured: ${err.message}`);
    return;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (query !== "") {
      search(query);
    }
  });
  submit.disabled = false;
  showEventsStatus();
  document.body.dataset.ready = "true";
}

start();
