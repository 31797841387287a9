/**
 * The reconcile scheduling SQL (supabase/migrations/20261206000500_hms_reconcile.sql) on the
 * stack's database, which has the real pg_cron and the stand-ins for pg_net and Supabase Vault
 * (scripts/stack/supabase_extensions.sql: their documented signatures, a queue instead of HTTP,
 * the secret unencrypted). Without the extensions (dropped inside a transaction that is rolled
 * back) every entry point says which one is missing; with them one call schedules a real
 * pg_cron job, and what is checked is our SQL's use of them. Every test rolls back.
 */

import type postgres from "postgres";
import { assert } from "./helpers/assert.ts";
import { stackTest } from "./helpers/stack.ts";

class Rollback extends Error {}

async function sqlError(
  run: () => Promise<unknown>,
): Promise<{ code: string; message: string }> {
  try {
    await run();
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return { code: e.code ?? "", message: e.message ?? String(error) };
  }
  throw new Error("expected an SQL error");
}

stackTest({
  name: "without the extensions every entry point names what is missing",
  async fn({ sql }) {
    await sqlError(() =>
      sql.begin(async (tx: postgres.TransactionSql) => {
        await tx`drop schema net cascade`;
        await tx`drop schema vault cascade`;
        await tx`drop extension pg_cron`;
        const error = (statement: string) =>
          sqlError(() => tx.savepoint((sp) => sp.unsafe(statement)));
        const now = await error(`select public.hms_reconcile_now()`);
        assert.equal(now.code, "55000");
        assert.match(now.message, /pg_net, supabase_vault/);
        const schedule = await error(
          `select public.hms_schedule_reconcile('https://x.supabase.co/functions/v1/hms-webhook', 's')`,
        );
        assert.match(schedule.message, /pg_cron, pg_net, supabase_vault/);
        assert.match(
          (await error(`select public.hms_unschedule_reconcile()`)).message,
          /pg_cron/,
        );
        throw new Rollback("leave no trace");
      })
    ).then((e) => assert.match(e.message, /leave no trace/));
    const [{ n }] =
      await sql`select count(*)::int as n from pg_extension where extname = 'pg_cron'`;
    assert.equal(n, 1, "rolled back");
  },
});

stackTest({
  name: "one call schedules the job; the secret stays in Vault, not in the job",
  async fn({ sql }) {
    const secret = "whsec-" + crypto.randomUUID();
    await sqlError(() =>
      sql.begin(async (tx: postgres.TransactionSql) => {
        // pg_cron's unschedule raises for an unknown name: ours answers false.
        assert.equal(
          (await tx`select public.hms_unschedule_reconcile() as ok`)[0].ok,
          false,
        );
        const [{ jobid }] = await tx`select public.hms_schedule_reconcile(
        'https://abc.supabase.co/functions/v1/hms-webhook/', ${secret}) as jobid`;
        const jobs = await tx`select jobname, schedule, command from cron.job
          where jobname = 'hms-reconcile'`;
        assert.deepEqual(jobs.map((j) => ({ ...j })), [{
          jobname: "hms-reconcile",
          schedule: "*/5 * * * *",
          command: "select public.hms_reconcile_now()",
        }]);
        assert.ok(Number(jobid) > 0);
        const vault = await tx`select name, secret from vault.secrets
          where name like 'hms_reconcile_%' order by name`;
        assert.deepEqual(vault.map((v) => [v.name, v.secret]), [
          ["hms_reconcile_header", "x-webhook-secret"],
          ["hms_reconcile_secret", secret],
          [
            "hms_reconcile_url",
            "https://abc.supabase.co/functions/v1/hms-webhook/reconcile",
          ],
        ]);

        // By hand: one POST to …/reconcile with the secret header and its time (no pgcrypto
        // here: no signature), a timeout for a whole pass.
        const before = Date.now();
        await tx`select public.hms_reconcile_now()`;
        const [call] =
          await tx`select url, convert_from(body, 'UTF8')::jsonb as body,
          headers, timeout_milliseconds from net.http_request_queue order by id desc limit 1`;
        assert.equal(
          call.url,
          "https://abc.supabase.co/functions/v1/hms-webhook/reconcile",
        );
        assert.deepEqual(Object.keys(call.body), ["timestamp"]);
        const sentAt = Date.parse(call.body.timestamp);
        assert.ok(sentAt >= before - 1000 && sentAt <= Date.now() + 1000);
        assert.deepEqual(call.headers, {
          "Content-Type": "application/json",
          "x-webhook-secret": secret,
        });
        assert.equal(call.timeout_milliseconds, 120000);

        // Again: a new schedule, a rotated secret and header, still one job and three secrets.
        await tx`select public.hms_schedule_reconcile(
        'https://abc.supabase.co/functions/v1/hms-webhook/reconcile', 'rotated', '*/2 * * * *', 'X-HMS-Secret')`;
        const [job] =
          await tx`select count(*)::int as n, max(schedule) as schedule
          from cron.job where jobname = 'hms-reconcile'`;
        assert.deepEqual({ ...job }, { n: 1, schedule: "*/2 * * * *" });
        const rotated = await tx`select name, secret from vault.secrets
          where name like 'hms_reconcile_%' order by name`;
        assert.deepEqual(rotated.map((v) => v.secret), [
          "x-hms-secret",
          "rotated",
          "https://abc.supabase.co/functions/v1/hms-webhook/reconcile",
        ]);
        for (
          const bad of [
            "abc.supabase.co",
            "ftp://x",
            "https://x?y=1",
            "https://a b",
          ]
        ) {
          const e = await sqlError(() =>
            tx.savepoint((sp) =>
              sp`select public.hms_schedule_reconcile(${bad}, 's')`
            )
          );
          assert.equal(e.code, "22023", bad);
        }
        assert.equal(
          (await sqlError(() =>
            tx.savepoint((sp) =>
              sp`select public.hms_schedule_reconcile('https://x', '')`
            )
          )).code,
          "22023",
        );
        // The API roles cannot trigger a pass or read the secrets through these functions.
        for (const role of ["anon", "authenticated", "service_role"]) {
          const denied = await sqlError(() =>
            tx.savepoint(async (sp) => {
              await sp.unsafe(`set local role ${role}`);
              await sp`select public.hms_reconcile_now()`;
            })
          );
          assert.equal(denied.code, "42501", role);
        }
        assert.equal(
          (await tx`select public.hms_unschedule_reconcile() as ok`)[0].ok,
          true,
        );
        assert.equal(
          (await tx`select count(*)::int as n from cron.job
            where jobname = 'hms-reconcile'`)[0].n,
          0,
        );
        throw new Rollback("leave no trace");
      })
    ).then((e) => assert.match(e.message, /leave no trace/));
    const [{ n }] = await sql`select count(*)::int as n from vault.secrets
      where name like 'hms_reconcile_%'`;
    assert.equal(n, 0, "rolled back");
  },
});

stackTest({
  name:
    "the scheduler's request carries its time and, with pgcrypto, a signature the function admits in signature mode",
  async fn(stack) {
    const fn = await stack.startFunction({
      env: {
        HMS_WEBHOOK_AUTH: "signature",
        HMS_RECONCILE_INTERVAL_SECONDS: "0",
      },
    });
    try {
      const url = `${fn.url}/hms-webhook`;
      const sent = await stack.sql.begin(
        async (tx: postgres.TransactionSql) => {
          await tx`create extension if not exists pgcrypto`;
          await tx`select public.hms_schedule_reconcile(${url}, ${stack.secret})`;
          await tx`select public.hms_reconcile_now()`;
          // pg_net sends the jsonb body as its text.
          const [call] = await tx`select url,
            convert_from(body, 'UTF8') as body, headers
            from net.http_request_queue order by id desc limit 1`;
          throw new Rollback(JSON.stringify(call));
        },
      ).catch((e) => {
        if (!(e instanceof Rollback)) throw e;
        return JSON.parse(e.message);
      });
      assert.match(sent.headers["x-100ms-signature"], /^[0-9a-f]{64}$/);
      const answer = await fetch(sent.url, {
        method: "POST",
        headers: sent.headers,
        body: sent.body,
      });
      const text = await answer.text();
      assert.equal(answer.status, 200, text);
      assert.equal(JSON.parse(text).api, "off");
      // The same request without its signature is refused in this mode.
      const unsigned = { ...sent.headers };
      delete unsigned["x-100ms-signature"];
      const refused = await fetch(sent.url, {
        method: "POST",
        headers: unsigned,
        body: sent.body,
      });
      await refused.body?.cancel();
      assert.equal(refused.status, 401);
    } finally {
      await fn.stop();
    }
  },
});
