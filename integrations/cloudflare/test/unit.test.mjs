// Pure parts of the module, compiled by run.sh into dist/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { inspectable } from "../dist/src/index.js";

const defaults = ["application/json", "application/*+json", "text/plain"];

test("media types are matched without their parameters and case", () => {
  assert.equal(inspectable("application/json; charset=utf-8", defaults), true);
  assert.equal(inspectable("Application/JSON", defaults), true);
  assert.equal(inspectable("text/plain;charset=UTF-8", defaults), true);
});

test("structured-syntax suffixes match application/*+json", () => {
  assert.equal(inspectable("application/vnd.api+json", defaults), true);
  assert.equal(inspectable("application/problem+xml", defaults), false);
});

test("a whole type matches type/*", () => {
  assert.equal(inspectable("text/event-stream", ["text/*"]), true);
  assert.equal(inspectable("text/event-stream", defaults), false);
});

test("other types are not sent, a missing type is", () => {
  assert.equal(inspectable("application/octet-stream", defaults), false);
  assert.equal(inspectable("multipart/form-data; boundary=x", defaults), false);
  assert.equal(inspectable(null, defaults), true);
});
