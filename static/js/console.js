// A VM's serial console: xterm.js over the console WebSocket (protocol: docs/consoles.md).
// Binary frames carry the guest's bytes (scrollback first); text frames are JSON events:
// {"event": "live"} after the scrollback, {"event": "closed", code, reason} before a close.

const config = JSON.parse(document.getElementById("page-config").textContent);
const stateBadge = document.getElementById("console-state");
const closedLine = document.getElementById("console-closed");

const term = new window.Terminal({ convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: 14 });
term.open(document.getElementById("terminal"));
term.focus();

const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(`${scheme}//${window.location.host}${config.consolePath}`);
socket.binaryType = "arraybuffer";
const encoder = new TextEncoder();
let closedReason = "";

function setState(text, cls) {
  stateBadge.textContent = text;
  stateBadge.className = `badge ${cls}`;
  stateBadge.dataset.state = text;
}

socket.addEventListener("message", (event) => {
  if (typeof event.data === "string") {
    const message = JSON.parse(event.data);
    if (message.event === "live") setState("live", "status-active");
    if (message.event === "closed") closedReason = message.reason;
    return;
  }
  term.write(new Uint8Array(event.data));
});

socket.addEventListener("close", (event) => {
  setState("closed", "status-failed");
  closedLine.hidden = false;
  closedLine.textContent = `Console closed (${event.code}): ${closedReason || event.reason || "connection lost"}. Reload to reconnect.`;
  term.options.disableStdin = true;
});

// Keystrokes, Ctrl-C and pastes: xterm hands them over as text; the guest gets their UTF-8 bytes.
term.onData((data) => {
  if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
});

// A handle for tests.
window.sliceConsole = { term, socket };
