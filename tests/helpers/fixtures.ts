/**
 * Loads the 100ms sample payloads in tests/fixtures/100ms/ as request bodies, byte for byte,
 * replacing only the room id and event id and optionally shifting every time by whole seconds.
 */

import { uuid } from "../../scripts/lib/hms.ts";

/** The room id used throughout the 100ms sample story. */
export const SAMPLE_ROOM_ID = "6501c1d2e3f4a5b6c7d8e9f0";

/** The sample story in delivery order. */
export const SAMPLE_STORY = [
  "session.open.success",
  "peer.join.success",
  "role.change.success",
  "peer.leave.success",
  "room.end.success",
  "session.close.success",
] as const;

const TIME = /"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?Z"/g;

/** Options of {@link sampleBody}. */
export interface SampleOptions {
  roomId: string;
  /** Envelope id; default a fresh UUID. */
  id?: string;
  /** Added to every time in the body (whole seconds keep the fraction digits as they are). */
  shiftSeconds?: number;
}

/** One sample as the exact bytes to send. */
export async function sampleBody(
  type: string,
  options: SampleOptions,
): Promise<string> {
  const url = new URL(`../fixtures/100ms/${type}.json`, import.meta.url);
  const original = await Deno.readTextFile(url);
  const shift = options.shiftSeconds ?? 0;
  if (!Number.isInteger(shift)) {
    throw new Error("shiftSeconds must be a whole number");
  }
  let body = original.replaceAll(
    `"${SAMPLE_ROOM_ID}"`,
    JSON.stringify(options.roomId),
  )
    .replace(/("id": )"[^"]*"/, `$1${JSON.stringify(options.id ?? uuid())}`);
  if (shift !== 0) {
    body = body.replace(
      TIME,
      (_, seconds: string, fraction: string | undefined) => {
        const shifted = new Date(Date.parse(`${seconds}Z`) + shift * 1000)
          .toISOString().slice(0, 19);
        return `"${shifted}${fraction ?? ""}Z"`;
      },
    );
  }
  return body;
}
