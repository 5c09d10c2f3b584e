// Sign-in page: keep the page to return to. The token goes to /ui/login as a form post (never to script).

import { byId, markNav } from "../lib/dom.js";

markNav("");
const next = new URLSearchParams(location.search).get("next");
if (next) byId("next").value = next;
byId("token").focus();
