// Handlers written with AWS's TypeScript SDK (@aws/durable-execution-sdk-js), as a user would
// write them for Lambda: some of AWS's conformance requirements (exported `req_1_1` for
// requirement 1.1, from its description) and the scenarios of tests/test_node_handlers.py.
// The test copies this file beside an npm install of the SDK and registers each export with
// `durable functions add NAME --node handlers.js:EXPORT`.
"use strict";

const fs = require("node:fs");
const {
  withDurableExecution,
  createRetryStrategy,
  createWaitStrategy,
  JitterStrategy,
} = require("@aws/durable-execution-sdk-js");

const durable = (fn) => withDurableExecution(fn);

// A step body failing each attempt before `success` (attempts count from 1).
const failingUntil = (success, result) => async (step) => {
  if (step.attempt < success) throw new Error(`attempt ${step.attempt} failed`);
  return result;
};

const pollUntil = (threshold, initialState, delay = 1) => ({
  initialState,
  waitStrategy: createWaitStrategy({
    shouldContinuePolling: (state) => state < threshold,
    initialDelay: { seconds: delay }, backoffRate: 1, jitter: JitterStrategy.NONE,
  }),
});

const increment = async (state) => state + 1;

// -- AWS's conformance requirements ----------------------------------------------------------

exports.req_1_1 = durable(async (event, context) =>
  context.step(async () => `Hello, ${event}!`));

exports.req_1_3 = durable(async (event, context) => {
  const first = await context.step(async () => "first");
  return context.step(async () => `${first}_second`);
});

exports.req_1_14 = durable(async (event, context) =>
  context.step(failingUntil(3, "third time"), {
    retryStrategy: createRetryStrategy({
      maxAttempts: 5, initialDelay: { seconds: 2 }, backoffRate: 3, jitter: JitterStrategy.NONE,
    }),
  }));

exports.req_2_1 = durable(async (event, context) => {
  await context.wait({ seconds: 2 });
});

exports.req_3_1 = durable(async (event, context) =>
  context.runInChildContext(async (child) => child.step(async () => event)));

exports.req_3_6 = durable(async (event, context) =>
  context.runInChildContext("outer", async (outer) => {
    await outer.step(async () => event);
    return outer.runInChildContext("inner", async (inner) => inner.step(async () => event));
  }));

exports.req_3_10 = durable(async (event, context) =>
  context.runInChildContext("step-and-wait", async (child) => {
    const value = await child.step(async () => event);
    await child.wait({ seconds: 1 });
    return value;
  }));

// The crash of 3.12 is real: the step exits the host process once its START is checkpointed
// (the SDK sends it in the background), and the server starts the host again.
const crashed = (input) => require("node:path").join(require("node:os").tmpdir(),
  `durable-node-crashed-${input}`);
let arnOf312 = null;
const req312 = durable(async (event, context) =>
  context.runInChildContext(async (child) => child.step(async () => {
    if (fs.existsSync(crashed(event))) return event;
    const history = `${process.env.AWS_ENDPOINT_URL_LAMBDA}/2025-12-01/durable-executions/` +
      `${encodeURIComponent(arnOf312)}/history`;
    for (let i = 0; i < 600; i++) {
      const { Events } = await (await fetch(history)).json();
      if (Events.some((e) => e.EventType === "StepStarted")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    fs.writeFileSync(crashed(event), "");
    process.exit(1);
  })));
exports.req_3_12 = async (envelope, lambdaContext) => {
  arnOf312 = envelope.DurableExecutionArn;
  return req312(envelope, lambdaContext);
};

exports.req_4_1 = durable(async (event, context) => {
  const [result] = await context.createCallback(event);
  return result;
});

exports.req_4_6 = exports.req_4_1;

exports.req_6_1 = durable(async (event, context) =>
  context.waitForCondition(increment, pollUntil(event, 0)));

exports.req_6_5 = durable(async (event, context) =>
  context.waitForCondition(increment, pollUntil(event, 0, 2)));

exports.req_8_1 = durable(async (event, context) =>
  (await context.parallel("parallel", [
    async (ctx) => ctx.step(async () => "task-1"),
    async (ctx) => ctx.step(async () => "task-2"),
  ], { maxConcurrency: 1 })).getResults());

exports.req_9_1 = durable(async (event, context) =>
  (await context.map("map", event, async (ctx, item) =>
    ctx.step(async () => `Hello, ${item}!`), { maxConcurrency: 1 })).getResults());

exports.req_9_15 = durable(async (event, context) =>
  (await context.map("suspend", ["r0", "r1"], async (ctx, item, index) => {
    if (index === 1) await ctx.wait({ seconds: 1 });
    return ctx.step(async () => item);
  }, { maxConcurrency: 1 })).getResults());

// -- invoke: a parent chaining a registered function ------------------------------------------

exports.doubler = durable(async (event, context) =>
  context.step("double", async () => event.n * 2));

exports.invoker = durable(async (event, context) => {
  const doubled = await context.invoke("call-doubler", event.target, { n: event.n });
  return context.step("plus-one", async () => doubled + 1);
});

// -- the crash test: each step appends to the effects file; `slow` waits for a gate file ----

const note = (file, line) => fs.appendFileSync(file, `${line}\n`);

exports.gated = durable(async (event, context) => {
  await context.step("one", async () => note(event.effects, "one"));
  await context.step("slow", async () => {
    note(event.effects, "slow-started");
    while (!fs.existsSync(event.gate)) await new Promise((r) => setTimeout(r, 20));
    note(event.effects, "slow");
  });
  await context.wait({ seconds: 1 });
  await context.step("three", async () => note(event.effects, "three"));
  return "done";
});
