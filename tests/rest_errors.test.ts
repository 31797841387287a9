/**
 * The REST stand-in's error mapping against PostgREST's table (docs.postgrest.org,
 * references/errors.rst): SQLSTATE -> HTTP status, role-dependent 42501, custom PTxyz codes,
 * `RAISE SQLSTATE 'PGRST'` bodies, and lost connections. Pure: no stack needed.
 */

import { DbUnavailable } from "../scripts/stack/rest_db.ts";
import {
  errorResponse,
  statusForSqlState,
} from "../scripts/stack/rest_errors.ts";
import { assert } from "./helpers/assert.ts";

Deno.test("SQLSTATE -> HTTP status follows PostgREST", () => {
  const table: [string, number][] = [
    ["P0001", 400],
    ["P0002", 500],
    ["23505", 409],
    ["23503", 409],
    ["23502", 400],
    ["42883", 404],
    ["42P01", 404],
    ["08006", 503],
    ["53300", 503],
    ["57014", 500],
    ["57P01", 503],
    ["57P02", 500],
    ["53400", 500],
    ["40001", 500],
    ["XX000", 500],
    ["22P02", 400],
    ["22023", 400],
    ["25006", 405],
    ["PT404", 404],
    ["PT402", 402],
    ["42703", 400],
  ];
  for (const [code, status] of table) {
    assert.equal(statusForSqlState(code, "service_role"), status, code);
  }
  assert.equal(statusForSqlState("42501", "anon"), 401);
  assert.equal(statusForSqlState("42501", "service_role"), 403);
});

Deno.test("server errors keep code, message, details and hint", async () => {
  const error = Object.assign(new Error("nope"), {
    code: "P0001",
    severity: "ERROR",
    detail: "the detail",
    hint: "the hint",
  });
  const response = errorResponse(error, "service_role");
  assert.equal(response.status, 400);
  assert.match(
    response.headers.get("content-type") ?? "",
    /^application\/json/,
  );
  assert.deepEqual(await response.json(), {
    code: "P0001",
    details: "the detail",
    hint: "the hint",
    message: "nope",
  });
});

Deno.test("RAISE SQLSTATE 'PGRST' sets body, status and headers", async () => {
  const error = Object.assign(new Error('{"code":"123","message":"custom"}'), {
    code: "PGRST",
    severity: "ERROR",
    detail: '{"status":402,"headers":{"x-powered-by":"test"}}',
  });
  const response = errorResponse(error, "anon");
  assert.equal(response.status, 402);
  assert.equal(response.headers.get("x-powered-by"), "test");
  assert.deepEqual(await response.json(), { code: "123", message: "custom" });
});

Deno.test("an unreachable database is 503 PGRST000, a connection lost in use 503 PGRST001", async () => {
  // PostgREST's bodies (src/PostgREST/Error.hs): ConnectionUsageError and ClientError.
  const cases: [DbUnavailable["kind"], string, string][] = [
    [
      "connect",
      "PGRST000",
      "Database connection error. Retrying the connection.",
    ],
    ["lost", "PGRST001", "Database client error. Retrying the connection."],
  ];
  for (const [kind, code, message] of cases) {
    const response = errorResponse(
      new DbUnavailable(kind, new Error("connect ECONNREFUSED 127.0.0.1:1")),
      "service_role",
    );
    assert.equal(response.status, 503, kind);
    assert.deepEqual(await response.json(), {
      code,
      details: "connect ECONNREFUSED 127.0.0.1:1",
      hint: null,
      message,
    });
  }
  // A server error keeps its SQLSTATE, with PostgREST's status: 57P01 (a shutdown ended the
  // query) is 503 in src/PostgREST/Error.hs, 57P02 (crash of another backend) 500 like all 57*.
  for (const [code, status] of [["57P01", 503], ["57P02", 500]] as const) {
    const response = errorResponse(
      Object.assign(new Error("terminating connection"), {
        code,
        severity: "FATAL",
      }),
      "service_role",
    );
    assert.equal(response.status, status, code);
    assert.equal((await response.json()).code, code);
  }
  const other = errorResponse(new Error("bug"), "service_role");
  assert.equal(other.status, 500);
  await other.body?.cancel();
});
