// Durable's host for AWS Lambda durable handlers written in JavaScript or TypeScript (compiled),
// such as ones made with AWS's SDK (`withDurableExecution` of @aws/durable-execution-sdk-js).
// `durable server` runs it with the machine's node for `durable functions add NAME --node
// FILE[:EXPORT]`; it serves the same invocation contract over HTTP as Durable's Python host
// (durable.serve, src/durable/invoke/host.py), so the server invokes it like any --url function:
//
//   POST /, /NAME, /2015-03-31/functions/NAME/invocations   one invocation envelope each
//   GET  /                                                   {"functions": [NAME]}
//
// The handler checkpoints where its SDK's Lambda client points: the server sets
// AWS_ENDPOINT_URL_LAMBDA (and the credentials) in this process's environment. Node builtins
// only, so that nothing of Durable has to be installed with npm.
//
//   node node_host.cjs FILE[:EXPORT] [--name NAME] [--host H] [--port N] [--ready-fd FD]
//   node node_host.cjs FILE[:EXPORT] --check
"use strict";

const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");
const { pathToFileURL } = require("node:url");

const INVOCATION_TIMEOUT_MS = 900_000; // Lambda's 15 minutes, as the Python host answers
const KEEP_ALIVE_MS = 75_000; // the server's pool reuses connections; a 5 s close races it

function usage(message) {
  process.stderr.write(`${message}\nusage: node node_host.cjs FILE[:EXPORT] [--check] ` +
    "[--name NAME] [--host HOST] [--port PORT] [--ready-fd FD]\n");
  process.exit(2);
}

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 0, check: false, name: null, readyFd: null };
  let target = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${arg} needs a value`));
    if (arg === "--check") args.check = true;
    else if (arg === "--name") args.name = value();
    else if (arg === "--host") args.host = value();
    else if (arg === "--port") args.port = Number(value());
    else if (arg === "--ready-fd") args.readyFd = Number(value());
    else if (arg.startsWith("--")) usage(`unknown option ${arg}`);
    else if (target === null) target = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (target === null) usage("no handler file given");
  const match = /^(.*):([A-Za-z_$][\w$]*)$/.exec(target);
  args.file = path.resolve(match ? match[1] : target);
  args.exportName = match ? match[2] : "handler";
  args.name ??= path.basename(args.file).replace(/\.[cm]?js$/, "");
  return args;
}

// A CommonJS module by require; an ES module (.mjs, or "type": "module") by import.
async function loadModule(file) {
  if (!file.endsWith(".mjs")) {
    try {
      return require(file);
    } catch (e) {
      if (e.code !== "ERR_REQUIRE_ESM" && e.code !== "ERR_REQUIRE_ASYNC_MODULE") throw e;
    }
  }
  return import(pathToFileURL(file).href);
}

async function loadHandler(file, exportName) {
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist`);
  const module = await loadModule(file);
  const fn = module[exportName] ?? module.default?.[exportName];
  if (typeof fn !== "function") {
    const found = Object.keys(module).filter((k) => typeof module[k] === "function");
    throw new Error(`${file} has no function export ${JSON.stringify(exportName)} ` +
      `(its function exports: ${found.join(", ") || "none"})`);
  }
  return fn;
}

// What a Lambda handler may read of its context outside Lambda (host.py's _LambdaContext).
function lambdaContext(name) {
  const deadline = Date.now() + INVOCATION_TIMEOUT_MS;
  return {
    functionName: name,
    functionVersion: "$LATEST",
    awsRequestId: crypto.randomUUID(),
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${name}`,
    memoryLimitInMB: "128",
    logGroupName: name,
    logStreamName: name,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function answer(res, status, body, headers = {}) {
  const data = JSON.stringify(body ?? null);
  res.writeHead(status, { "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(data), ...headers });
  res.end(data);
}

// Lambda's answer for a function that threw: the invoker counts the invocation failed and
// invokes the function again later.
function functionError(res, error) {
  const e = error instanceof Error ? error : new Error(String(error));
  answer(res, 200, { errorType: e.name || "Error", errorMessage: e.message,
    stackTrace: (e.stack || "").split("\n") }, { "X-Amz-Function-Error": "Unhandled" });
}

function route(method, url, name) {
  const pathname = new URL(url, "http://host").pathname.replace(/\/+$/, "") || "/";
  if (pathname === "/") return method === "GET" ? "index" : method === "POST" ? name : null;
  if (method !== "POST") return null;
  const lambda = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(pathname);
  const named = lambda ? lambda[1] : /^\/([^/]+)$/.exec(pathname)?.[1];
  return named === undefined ? null : decodeURIComponent(named);
}

function serve(args, handler) {
  const server = http.createServer((req, res) => {
    const target = route(req.method, req.url, args.name);
    if (target === "index") return answer(res, 200, { functions: [args.name] });
    if (target === null) return answer(res, 404, { errorType: "NotFound",
      errorMessage: `no route ${req.method} ${req.url}` });
    if (target !== args.name) {
      return answer(res, 404, { errorType: "ResourceNotFoundException", errorMessage:
        `no function ${JSON.stringify(target)} here; this host serves: ${args.name}` },
        { "x-amzn-ErrorType": "ResourceNotFoundException" });
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      let event;
      try {
        const text = Buffer.concat(chunks).toString("utf8");
        event = text.trim() ? JSON.parse(text) : null;
      } catch (e) {
        return answer(res, 400, { errorType: "InvalidRequestContentException",
          errorMessage: `the body is not JSON: ${e.message}` },
          { "x-amzn-ErrorType": "InvalidRequestContentException" });
      }
      try {
        const out = await handler(event, lambdaContext(args.name));
        answer(res, 200, out, { "X-Amz-Executed-Version": "$LATEST" });
      } catch (e) {
        functionError(res, e);
      }
    });
  });
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = KEEP_ALIVE_MS + 1000;
  server.requestTimeout = 0; // an invocation may run up to Lambda's 15 minutes
  server.listen(args.port, args.host, () => {
    const { port } = server.address();
    const ready = `${JSON.stringify({ listening: `http://${args.host}:${port}`,
      function: args.name })}\n`;
    if (args.readyFd !== null) {
      fs.writeSync(args.readyFd, ready);
      fs.closeSync(args.readyFd);
    } else {
      process.stdout.write(ready);
    }
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let handler;
  try {
    handler = await loadHandler(args.file, args.exportName);
  } catch (e) {
    process.stderr.write(`cannot load ${args.file}: ${e && e.message ? e.message : e}\n`);
    process.exit(2);
  }
  if (args.check) process.exit(0); // the module may hold handles open; checking is done
  if (args.readyFd !== null) {
    // Started by `durable server`, which holds this pipe open: its end (the server stopped,
    // or was killed) ends this host too, instead of leaving it serving nobody.
    process.stdin.on("end", () => process.exit(0));
    process.stdin.on("error", () => process.exit(0));
    process.stdin.resume();
  }
  serve(args, handler);
}

main();
