// Copy the pinned front-end libraries from node_modules into static/vendor/ (no CDN, no build step).
// Run with `npm run vendor` after `npm install`; the copies are committed.
// `files` are copied flat into static/vendor/NAME/; `trees` keep their layout (noVNC's ES modules import
// each other by relative path, core/ -> ../vendor/pako/).
const fs = require("fs");

const LIBS = {
  cytoscape: { from: "node_modules/cytoscape/", files: ["dist/cytoscape.min.js", "LICENSE"] },
  xterm: { from: "node_modules/@xterm/xterm/", files: ["lib/xterm.js", "css/xterm.css", "LICENSE"] },
  novnc: { from: "node_modules/@novnc/novnc/", files: ["LICENSE.txt"], trees: ["core", "vendor/pako"] },
};

for (const [name, lib] of Object.entries(LIBS)) {
  const dest = `static/vendor/${name}/`;
  fs.mkdirSync(dest, { recursive: true });
  for (const file of lib.files) fs.copyFileSync(lib.from + file, dest + file.split("/").pop());
  for (const tree of lib.trees || []) {
    fs.rmSync(dest + tree, { recursive: true, force: true });
    fs.cpSync(lib.from + tree, dest + tree, { recursive: true });
  }
  const version = JSON.parse(fs.readFileSync(lib.from + "package.json")).version;
  fs.writeFileSync(dest + "VERSION", version + "\n");
}
