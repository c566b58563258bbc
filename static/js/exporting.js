// Export of a slice design as a YAML or JSON file (GET /api/slices/{id}/export/).

import { api } from "./api.js";
import { download } from "./ui.js";

const TYPES = { yaml: "application/yaml", json: "application/json" };

export async function exportSlice(slice, format) {
  const response = await api(`slices/${slice.id}/export/`, {
    query: { format },
    raw: true,
    accept: `${TYPES[format]}, */*`,
  });
  const blob = await response.blob();
  const disposition = response.headers.get("content-disposition") || "";
  const match = disposition.match(/filename="?([^";]+)"?/);
  download(blob, match ? match[1] : `${slice.name}.${format === "yaml" ? "yaml" : "json"}`);
}
