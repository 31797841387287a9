/**
 * pg_cron for real: the stack's PostgreSQL preloads Debian's pg_cron and runs its jobs in the
 * stack's database. `hms_schedule_jobs()` (run by the migrations) schedules the trending refresh
 * and the ledger prune as real jobs, and the refresh job, run by pg_cron's scheduler, brings a
 * stale stored score to now.
 */

import { assert } from "./helpers/assert.ts";
import { stackTest } from "./helpers/stack.ts";

/** Longest wait for pg_cron's scheduler to start the job (a minute schedule starts within 60 s). */
const RUN_WITHIN_MS = 150_000;

stackTest({
  name:
    "hms_schedule_jobs schedules real pg_cron jobs; the trending refresh job runs and brings a stale stored score to now",
  async fn({ sql }) {
    const [{ result }] = await sql`select public.hms_schedule_jobs() as result`;
    assert.match(result, /^scheduled hms-refresh-trending/);
    const jobs = await sql<
      { jobid: string; jobname: string; schedule: string; command: string }[]
    >`
      select jobid, jobname, schedule, command from cron.job
      where jobname in ('hms-refresh-trending', 'hms-prune-events') order by jobname`;
    assert.deepEqual(jobs.map((j) => [j.jobname, j.schedule, j.command]), [
      ["hms-prune-events", "17 3 * * *", "select hms_private.prune_events()"],
      [
        "hms-refresh-trending",
        "*/5 * * * *",
        "select hms_private.refresh_trending()",
      ],
    ]);
    const refresh = jobs[1].jobid;

    // A room never active scores 0; its stored score is made stale behind the rooms triggers'
    // back (which score every write), as a score stored long ago is.
    const roomId = `cron-${crypto.randomUUID()}`;
    await sql`insert into public.rooms (hms_room_id) values (${roomId})`;
    await sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update public.rooms set trending_score = 42 where hms_room_id = ${roomId}`;
    });
    const [{ stale }] = await sql`select trending_score::float8 as stale
      from public.rooms where hms_room_id = ${roomId}`;
    assert.equal(stale, 42);

    // The five-minute schedule shortened to the finest the installed pg_cron takes ('1 seconds'
    // from 1.5 on, else every minute); hms_schedule_jobs() puts it back.
    const [{ seconds }] = await sql`select
      string_to_array(split_part(extversion, '-', 1), '.')::int[] >= '{1,5}' as seconds
      from pg_extension where extname = 'pg_cron'`;
    // Test stacks keep the jobs inactive (main.ts pauseCronJobs); this one runs for the test.
    const [{ active }] = await sql`select active from cron.job
      where jobid = ${refresh}::bigint`;
    const [{ since }] = await sql`select now() as since`;
    try {
      await sql`select cron.alter_job(${refresh}::bigint,
        schedule := ${seconds ? "1 seconds" : "* * * * *"}, active := true)`;
      const deadline = Date.now() + RUN_WITHIN_MS;
      let run: { status: string; database: string }[] = [];
      while (Date.now() < deadline) {
        run = await sql`select status, database
          from cron.job_run_details
          where jobid = ${refresh}::bigint and start_time >= ${since}
            and status in ('succeeded', 'failed')
          order by runid limit 1`;
        if (run.length > 0) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      assert.equal(run.length, 1, "pg_cron ran hms-refresh-trending");
      assert.deepEqual({ ...run[0] }, {
        status: "succeeded",
        database: "postgres",
      });
      const [{ score }] = await sql`select trending_score::float8 as score
        from public.rooms where hms_room_id = ${roomId}`;
      assert.equal(score, 0, "the job refreshed the stale score");
    } finally {
      await sql`select public.hms_schedule_jobs()`;
      await sql`select cron.alter_job(${refresh}::bigint, active := ${active})`;
      await sql`delete from public.rooms where hms_room_id = ${roomId}`;
    }
    const [{ schedule }] = await sql`select schedule from cron.job
      where jobid = ${refresh}::bigint`;
    assert.equal(schedule, "*/5 * * * *", "the schedule is back");
  },
});
