/**
 * A stand-in for pg_cron's SQL interface, for test databases without the extension (Debian's
 * pg_cron needs `shared_preload_libraries` and is 1.4, which has no '1 seconds' schedules). It
 * follows pg_cron's README: `cron.schedule(job_name, schedule, command) returns bigint` upserts by
 * name, `cron.unschedule(job_name) returns boolean`, jobs in `cron.job`, and each run logged in
 * `cron.job_run_details` (jobid, runid, job_pid, database, username, command, status,
 * return_message, start_time, end_time), which pg_cron never cleans up itself. Nothing runs the
 * jobs: a test runs a job's `command` itself.
 */
export const CRON_STAND_IN = `
create schema cron;
create table cron.job (jobid bigserial primary key, jobname text unique, schedule text, command text);
create table cron.job_run_details (jobid bigint, runid bigserial primary key, job_pid integer,
  database text, username text, command text, status text, return_message text,
  start_time timestamptz, end_time timestamptz);
create function cron.schedule(job_name text, schedule text, command text) returns bigint
language sql as $$
  insert into cron.job (jobname, schedule, command) values (job_name, schedule, command)
  on conflict (jobname) do update set schedule = excluded.schedule, command = excluded.command
  returning jobid $$;
create function cron.unschedule(job_name text) returns boolean
language sql as $$
  with gone as (delete from cron.job where jobname = job_name returning 1)
  select exists (select 1 from gone) $$;
`;
