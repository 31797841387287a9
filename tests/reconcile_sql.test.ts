/**
 * The reconcile scheduling SQL (supabase/migrations/20261206000500_hms_reconcile.sql) on the
 * stack's real PostgreSQL. Without pg_cron, pg_net and Vault (as here) every entry point says
 * which extension is missing. pg_net and Supabase Vault cannot be installed here, so the second
 * part stands them in, inside a transaction that is rolled back, with exactly the signatures
 * their documentation gives: `cron.schedule(job_name, schedule, command) returns bigint` and
 * `cron.unschedule(job_name)` (pg_cron), `net.http_post(url text, body jsonb, params jsonb,
 * headers jsonb, timeout_milliseconds integer) returns bigint` (pg_net),
 * `vault.create_secret(new_secret, new_name, new_description, new_key_id)`,
 * `vault.update_secret(secret_id, new_secret, new_name, new_description, new_key_id)` and the
 * view `vault.decrypted_secrets` (supabase/vault). What is checked is our SQL's use of them.
 */

import type postgres from "postgres";
import { assert } from "./helpers/assert.ts";
import { CRON_STAND_IN } from "./helpers/cron.ts";
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

const STUBS = `${CRON_STAND_IN}
create schema net;
create table net.calls (id bigserial primary key, url text, body jsonb, params jsonb, headers jsonb,
  timeout_milliseconds integer);
create function net.http_post(url text, body jsonb default '{}'::jsonb, params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb, timeout_milliseconds integer default 5000)
returns bigint language sql as $$
  insert into net.calls (url, body, params, headers, timeout_milliseconds)
  values (url, body, params, headers, timeout_milliseconds) returning id $$;
create schema vault;
create table vault.secrets (id uuid primary key default gen_random_uuid(), name text unique,
  description text, secret text);
create view vault.decrypted_secrets as select *, secret as decrypted_secret from vault.secrets;
create function vault.create_secret(new_secret text, new_name text default null,
  new_description text default '', new_key_id uuid default null) returns uuid
language sql as $$ insert into vault.secrets (secret, name, description)
  values (new_secret, new_name, new_description) returning id $$;
create function vault.update_secret(secret_id uuid, new_secret text default null, new_name text default null,
  new_description text default null, new_key_id uuid default null) returns void
language sql as $$ update vault.secrets set secret = coalesce(new_secret, secret),
  name = coalesce(new_name, name), description = coalesce(new_description, description)
  where id = secret_id $$;
`;

stackTest({
  name: "without the extensions every entry point names what is missing",
  async fn({ sql }) {
    const now = await sqlError(() => sql`select public.hms_reconcile_now()`);
    assert.equal(now.code, "55000");
    assert.match(now.message, /pg_net, supabase_vault/);
    const schedule = await sqlError(() =>
      sql`select public.hms_schedule_reconcile('https://x.supabase.co/functions/v1/hms-webhook', 's')`
    );
    assert.match(schedule.message, /pg_cron, pg_net, supabase_vault/);
    assert.match(
      (await sqlError(() => sql`select public.hms_unschedule_reconcile()`))
        .message,
      /pg_cron/,
    );
  },
});

stackTest({
  name: "one call schedules the job; the secret stays in Vault, not in the job",
  async fn({ sql }) {
    const secret = "whsec-" + crypto.randomUUID();
    await sqlError(() =>
      sql.begin(async (tx: postgres.TransactionSql) => {
        await tx.unsafe(STUBS);
        const [{ jobid }] = await tx`select public.hms_schedule_reconcile(
        'https://abc.supabase.co/functions/v1/hms-webhook/', ${secret}) as jobid`;
        const jobs = await tx`select jobname, schedule, command from cron.job`;
        assert.deepEqual(jobs.map((j) => ({ ...j })), [{
          jobname: "hms-reconcile",
          schedule: "*/5 * * * *",
          command: "select public.hms_reconcile_now()",
        }]);
        assert.ok(Number(jobid) > 0);
        const vault =
          await tx`select name, secret from vault.secrets order by name`;
        assert.deepEqual(vault.map((v) => [v.name, v.secret]), [
          ["hms_reconcile_header", "x-webhook-secret"],
          ["hms_reconcile_secret", secret],
          [
            "hms_reconcile_url",
            "https://abc.supabase.co/functions/v1/hms-webhook/reconcile",
          ],
        ]);

        // By hand: one POST to …/reconcile with the secret header, a timeout for a whole pass.
        await tx`select public.hms_reconcile_now()`;
        const [call] =
          await tx`select url, body, headers, timeout_milliseconds from net.calls`;
        assert.equal(
          call.url,
          "https://abc.supabase.co/functions/v1/hms-webhook/reconcile",
        );
        assert.deepEqual(call.body, {});
        assert.deepEqual(call.headers, {
          "Content-Type": "application/json",
          "x-webhook-secret": secret,
        });
        assert.equal(call.timeout_milliseconds, 120000);

        // Again: a new schedule, a rotated secret and header, still one job and three secrets.
        await tx`select public.hms_schedule_reconcile(
        'https://abc.supabase.co/functions/v1/hms-webhook/reconcile', 'rotated', '*/2 * * * *', 'X-HMS-Secret')`;
        const [job] =
          await tx`select count(*)::int as n, max(schedule) as schedule from cron.job`;
        assert.deepEqual({ ...job }, { n: 1, schedule: "*/2 * * * *" });
        const rotated =
          await tx`select name, secret from vault.secrets order by name`;
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
          (await tx`select count(*)::int as n from cron.job`)[0].n,
          0,
        );
        throw new Rollback("leave no trace");
      })
    ).then((e) => assert.match(e.message, /leave no trace/));
    const [{ exists }] =
      await sql`select to_regnamespace('vault') is not null as exists`;
    assert.equal(exists, false, "rolled back");
  },
});
