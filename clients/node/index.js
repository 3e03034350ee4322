// Small gRPC client for the Hyphae contract (proto/hyphae/**/v1/*.proto).
//
// The contract is loaded from generated/descriptors.binpb, a FileDescriptorSet that scripts/gen.py builds with
// --include_imports, so google/api/*.proto and google/protobuf/*.proto are inside it and nothing else is needed at
// runtime. If that file is missing, the .proto sources are parsed instead with includeDirs
// [<repo>/proto, <repo>/third_party/googleapis] (the second dir is staged by scripts/gen.py and is gitignored).

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, "..", "..");
export const DEFAULT_DESCRIPTORS = join(REPO_ROOT, "generated", "descriptors.binpb");
export const DEFAULT_ADDRESS = "127.0.0.1:50051";

export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});

function findProtoFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findProtoFiles(path));
    else if (entry.name.endsWith(".proto")) out.push(path);
  }
  return out;
}

/**
 * Loads the package definition of the whole contract.
 * Order: `descriptors` option or HYPHAE_DESCRIPTORS env, then generated/descriptors.binpb, then the .proto sources.
 */
export function loadPackageDefinition({ descriptors } = {}) {
  const descriptorPath = descriptors ?? process.env.HYPHAE_DESCRIPTORS ?? DEFAULT_DESCRIPTORS;
  if (existsSync(descriptorPath)) {
    return protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(descriptorPath), LOADER_OPTIONS);
  }
  const protoRoot = join(REPO_ROOT, "proto");
  const googleapis = join(REPO_ROOT, "third_party", "googleapis");
  if (!existsSync(googleapis)) {
    throw new Error(
      `Hyphae contract not found: ${descriptorPath} is missing and ${googleapis} is not staged; ` +
        "run `python3 scripts/uv.py run python scripts/gen.py` at the repo root.",
    );
  }
  const files = findProtoFiles(join(protoRoot, "hyphae")).map((f) => relative(protoRoot, f));
  return protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs: [protoRoot, googleapis] });
}

let cachedDefinition = null;
function packageDefinition() {
  cachedDefinition ??= loadPackageDefinition();
  return cachedDefinition;
}

/** Fully qualified names of every service in the contract, e.g. "hyphae.workflows.v1.WorkflowService". */
export function listServices(definition = packageDefinition()) {
  // Messages and enums carry a `format` key; services are plain maps of method definitions.
  return Object.entries(definition)
    .filter(([, value]) => !("format" in value) && Object.values(value).some((m) => m && "requestSerialize" in m))
    .map(([name]) => name)
    .sort();
}

/**
 * Parses a hyphae.api.v1.Json message ({raw: string}) into a JS value; null/empty gives undefined.
 * Note: JSON.parse turns numbers into JS Number, so integers beyond 2**53 lose precision. That is JavaScript,
 * not the server: the raw text carries every digit, so read msg.raw yourself if you need them.
 */
export function decodeJson(msg) {
  if (msg == null || msg.raw == null || msg.raw === "") return undefined;
  return JSON.parse(msg.raw);
}

/** Builds a hyphae.api.v1.Json message from a JS value. */
export function encodeJson(value) {
  return { raw: JSON.stringify(value) };
}

/**
 * createClient({ address, apiKey, orgId }) → { call(service, method, request, options?), listWorkflows(req), ... }
 * Insecure channel. apiKey goes as `authorization: Bearer <apiKey>`, orgId as `x-org-id` metadata.
 */
export function createClient({ address = DEFAULT_ADDRESS, apiKey, orgId, descriptors, channelOptions } = {}) {
  const definition = descriptors ? loadPackageDefinition({ descriptors }) : packageDefinition();
  const grpcObject = grpc.loadPackageDefinition(definition);
  const credentials = grpc.credentials.createInsecure();
  const stubs = new Map();

  function stub(service) {
    if (!stubs.has(service)) {
      const ctor = service.split(".").reduce((node, part) => (node ? node[part] : undefined), grpcObject);
      if (typeof ctor !== "function" || !ctor.service) {
        throw new Error(`unknown service ${service}; known: ${listServices(definition).join(", ")}`);
      }
      stubs.set(service, new ctor(address, credentials, channelOptions));
    }
    return stubs.get(service);
  }

  function metadata() {
    const md = new grpc.Metadata();
    if (apiKey) md.set("authorization", `Bearer ${apiKey}`);
    if (orgId) md.set("x-org-id", String(orgId));
    return md;
  }

  /** Unary call; rejects with the grpc-js ServiceError ({code, details, metadata}). */
  function call(service, method, request = {}, { deadlineMs } = {}) {
    return new Promise((resolvePromise, reject) => {
      let client;
      try {
        client = stub(service);
      } catch (err) {
        reject(err);
        return;
      }
      const fn = client[method];
      if (typeof fn !== "function" || !client.constructor.service[method]) {
        reject(new Error(`unknown method ${service}/${method}`));
        return;
      }
      const callOptions = deadlineMs ? { deadline: new Date(Date.now() + deadlineMs) } : {};
      fn.call(client, request, metadata(), callOptions, (err, response) => (err ? reject(err) : resolvePromise(response)));
    });
  }

  return {
    call,
    services: () => listServices(definition),
    listWorkflows: (req = {}, opts) => call("hyphae.workflows.v1.WorkflowService", "ListWorkflows", req, opts),
    close() {
      for (const s of stubs.values()) s.close();
      stubs.clear();
    },
  };
}

export { grpc };
