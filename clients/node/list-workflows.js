#!/usr/bin/env node
// Lists the org's workflows over gRPC and prints ONE line of JSON to stdout:
//   {"workflows":[{"id":..., "name":..., "definition": <parsed JSON>}]}
// On a gRPC error: {"error":{"code":<numeric gRPC code>,"details":"..."}} and exit status 1.
// Env: HYPHAE_GRPC_ADDR (default 127.0.0.1:50051), HYPHAE_API_KEY, HYPHAE_ORG_ID.
import { createClient, decodeJson, DEFAULT_ADDRESS } from "./index.js";

const client = createClient({
  address: process.env.HYPHAE_GRPC_ADDR || DEFAULT_ADDRESS,
  apiKey: process.env.HYPHAE_API_KEY || undefined,
  orgId: process.env.HYPHAE_ORG_ID || undefined,
});

try {
  const res = await client.listWorkflows({ page_size: 100 }, { deadlineMs: 30_000 });
  const workflows = (res.workflows ?? []).map((w) => ({ id: w.id, name: w.name, definition: decodeJson(w.definition) ?? null }));
  process.stdout.write(JSON.stringify({ workflows }) + "\n");
} catch (err) {
  const code = typeof err?.code === "number" ? err.code : 2; // 2 = UNKNOWN for non-gRPC failures
  const details = err?.details || err?.message || String(err);
  process.stdout.write(JSON.stringify({ error: { code, details } }) + "\n");
  process.exitCode = 1;
} finally {
  client.close();
}
