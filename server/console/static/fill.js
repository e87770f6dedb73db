// The fill page: ODK Web Forms (vendored) renders the form; a filled form goes to the console's fill
// route with the page's CSRF token. Settings and the page's words come from #web-form's data attributes.
import { createApp, h } from "vue";
import { OdkWebForm, webFormsPlugin, POST_SUBMIT__NEW_INSTANCE } from "@getodk/web-forms";

const host = document.getElementById("web-form");
const cfg = host.dataset;
const status = document.getElementById("fill-status");

function say(text, kind, link) {
  status.className = "alert " + kind;
  status.textContent = text;
  if (link) {
    const a = document.createElement("a");
    a.href = link;
    a.id = "sent-link";
    a.textContent = cfg.msgOpen;
    status.append(" ", a);
  }
}

// A media reference (jr://images/x.png, jr://file/districts.csv, jr://file-csv/...) → the form's file.
function fetchFormAttachment(url) {
  const name = String(url.href ?? url).split("/").pop();
  return fetch(cfg.mediaUrl + name + cfg.mediaQuery, { credentials: "same-origin" });
}

async function send(payload, callback) {
  if (!cfg.submitUrl) {
    say(cfg.msgPreview, "ok");
    callback();
    return;
  }
  if (payload.status !== "ready") {
    say(cfg.msgFailed + " " + (payload.violations || []).map((v) => v.message || v).join("; "), "error");
    callback();
    return;
  }
  const body = payload.data[0];
  body.append("csrf_token", cfg.csrf);
  try {
    const reply = await fetch(cfg.submitUrl, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      redirect: "manual", // signed out meanwhile: the server would send the sign-in page
    });
    if (reply.type === "opaqueredirect") {
      say(cfg.msgFailed + " " + cfg.msgSignedOut, "error");
      callback();
      return;
    }
    const answer = (reply.headers.get("Content-Type") || "").includes("json") ? await reply.json() : {};
    if (reply.status === 201 && answer.url) {
      say(cfg.msgSent, "ok", answer.url);
      callback({ next: POST_SUBMIT__NEW_INSTANCE });
    } else {
      say(cfg.msgFailed + " " + (answer.message || reply.status + " " + reply.statusText), "error");
      callback();
    }
  } catch (error) {
    say(cfg.msgFailed + " " + error, "error");
    callback();
  }
  status.scrollIntoView({ block: "center" });
}

async function start() {
  say(cfg.msgLoading, "info");
  const reply = await fetch(cfg.formUrl, { credentials: "same-origin" });
  if (!reply.ok) {
    say(cfg.msgLoadFailed + " " + reply.status, "error");
    return;
  }
  const formXml = await reply.text();
  status.className = "";
  status.textContent = "";
  const app = createApp({
    render: () =>
      h(OdkWebForm, {
        formXml,
        fetchFormAttachment,
        missingResourceBehavior: "BLANK",
        trackDevice: true, // meta/deviceID: one stable id per browser (kept in its storage), as Central does
        onSubmit: send,
      }),
  });
  app.use(webFormsPlugin);
  app.mount(host);
}

start().catch((error) => say(cfg.msgLoadFailed + " " + error, "error"));
