// Small helpers shared by the pages.

/** The array inside a list response, whatever its key: a bare list, {key: [...]}, or {items: [...]}. */
export function listOf(payload, ...keys) {
  if (Array.isArray(payload)) return payload;
  for (const key of [...keys, "items", "data", "results"]) {
    if (payload && Array.isArray(payload[key])) return payload[key];
  }
  return [];
}

/** Agent ids of a session document or summary (agents as a dict, a list of ids, or a list of objects). */
export function agentsOf(doc) {
  const agents = doc?.agents;
  if (!agents) return [];
  if (Array.isArray(agents)) return agents.map((a) => (typeof a === "string" ? a : a.agent_id));
  return Object.keys(agents);
}

/** Entity ids an event touched (change_info.entity_ids), for display. */
export function entitiesOf(event) {
  const info = event?.change_info ?? event?.changeInfo;
  const ids = info?.entity_ids ?? info?.entityIds;
  return Array.isArray(ids) ? ids.map(String) : [];
}

/** The state transition of an event, or null. */
export function transitionOf(event) {
  const t = event?.state_transition ?? event?.stateTransition;
  if (!t) return null;
  return { from: t.from ?? t.from_state ?? t.fromState ?? "", to: t.to ?? "" };
}

/** Debounce fn by ms. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
