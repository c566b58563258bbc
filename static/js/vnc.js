// A VM's graphical console: noVNC (vendored, static/vendor/novnc) over the VNC WebSocket (docs/consoles.md).
// Binary frames carry RFB both ways; before a close the server sends a text frame
// {"event": "closed", code, reason} (noVNC ignores text frames: an empty message to it).
import RFB from "../vendor/novnc/core/rfb.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const stateBadge = document.getElementById("console-state");
const closedLine = document.getElementById("console-closed");

function setState(text, cls) {
  stateBadge.textContent = text;
  stateBadge.className = `badge ${cls}`;
  stateBadge.dataset.state = text;
}

// The page opens the WebSocket itself and hands it to noVNC, so that it can read the close reason too.
const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(`${scheme}//${window.location.host}${config.consolePath}`);
let closedReason = "";
socket.addEventListener("message", (event) => {
  if (typeof event.data !== "string") return;
  const message = JSON.parse(event.data);
  if (message.event === "closed") closedReason = message.reason;
});
socket.addEventListener("close", (event) => {
  setState("closed", "status-failed");
  closedLine.hidden = false;
  closedLine.textContent = `Console closed (${event.code}): ${closedReason || event.reason || "connection lost"}. Reload to reconnect.`;
});

const rfb = new RFB(document.getElementById("screen"), socket, { shared: true });
rfb.scaleViewport = true;
rfb.addEventListener("connect", () => setState("live", "status-active"));

// A handle for tests.
window.sliceVnc = { rfb, socket };
